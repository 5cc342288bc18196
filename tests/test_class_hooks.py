"""The hooks both wrappers record a model's construction with."""

import threading

from smh_jax.class_hooks import ThreadHooks


class Greeter:
    def greet(self, name):
        return f"hello {name}"


def _noting_greet(self, name):
    calls = HOOKS.current()
    if calls is not None:
        calls.append(name)
    return HOOKS.original(Greeter, "greet")(self, name)


HOOKS: ThreadHooks[list] = ThreadHooks([(Greeter, "greet", _noting_greet)])
ORIGINAL = Greeter.greet


def test_installed_only_while_a_recording_is_open_and_nested_recordings_take_the_calls():
    assert Greeter.greet is ORIGINAL
    with HOOKS.recording([]) as outer:
        assert Greeter.greet is _noting_greet
        Greeter().greet("a")
        with HOOKS.recording([]) as inner:
            assert Greeter().greet("b") == "hello b"
        Greeter().greet("c")
    assert Greeter.greet is ORIGINAL
    assert (outer, inner) == (["a", "c"], ["b"])


def test_other_threads_are_not_recorded_and_the_last_user_restores_the_original():
    calls, started, release = [], threading.Event(), threading.Event()

    def other_recording():
        with HOOKS.recording([]):
            started.set()
            release.wait()

    thread = threading.Thread(target=other_recording, daemon=True)
    thread.start()
    try:
        started.wait()
        with HOOKS.recording(calls):
            other = threading.Thread(target=Greeter().greet, args=("elsewhere",))
            other.start()
            other.join()
            Greeter().greet("here")
        assert Greeter.greet is _noting_greet  # the other thread's recording is still open
    finally:
        release.set()
        thread.join()
    assert Greeter.greet is ORIGINAL
    assert calls == ["here"]
