"""The dataset sources through the public API (get_info, create_source): the in-memory
sources on files the tests write, and the TFDS source on offline fakes (mock_tfds.py).
"""

from __future__ import annotations

import gc
import io
import json
import os
import re
import subprocess
import sys
import threading
import time

import mock_tfds as mock_tfds_lib
import numpy as np
import pytest
from PIL import Image

from smh_jax import data
from smh_jax.errors import UserError
from smh_jax.training import config_base

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_cfg(**overrides):
    """A tiny `config.dataset` of the real schema: 6x6 RGB images from an .npz."""
    cfg = config_base.base_config().dataset
    cfg.update({"name": "tiny", "source": "npz", "image_size": 6, "augment": "cifar",
                "shuffle_buffer": 64, "cache": False})
    cfg.update(overrides)
    return cfg


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


# --------------------------------------------------------------------------------------
# Fixtures: tiny datasets in every array format.

N_TRAIN, N_TEST, N_CLASSES = 37, 11, 5


def _arrays(seed):
    rng = np.random.default_rng(seed)
    images = {s: rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8)
              for s, n in (("train", N_TRAIN), ("test", N_TEST))}
    labels = {s: rng.integers(0, N_CLASSES, n) for s, n in (("train", N_TRAIN),
                                                             ("test", N_TEST))}
    labels["train"][:N_CLASSES] = np.arange(N_CLASSES)  # Every class present.
    return images, labels


@pytest.fixture(scope="module")
def plain_npz(tmp_path_factory):
    images, labels = _arrays(0)
    path = tmp_path_factory.mktemp("npz") / "plain.npz"
    np.savez(path, train_images=images["train"], train_labels=labels["train"],
             test_images=images["test"], test_labels=labels["test"])
    return str(path), images, labels


@pytest.fixture(scope="module")
def jpeg_npz(tmp_path_factory):
    images, labels = _arrays(1)
    arrays = {}
    for split in ("train", "test"):
        blobs = []
        for img in images[split]:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=95)
            blobs.append(buf.getvalue())
        offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        arrays[f"{split}_jpeg"] = np.frombuffer(b"".join(blobs), np.uint8)
        arrays[f"{split}_offsets"] = offsets
        arrays[f"{split}_labels"] = labels[split].astype(np.int64)
        # What Pillow decodes for each file on its own: the expected pixels.
        images[split] = np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in blobs])
    path = tmp_path_factory.mktemp("npz") / "jpeg.npz"
    np.savez(path, **arrays)
    return str(path), images, labels


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(2)
    classes = ["cat", "dog", "emu"]
    counts = {"train": [5, 4, 3], "test": [2, 1, 2]}
    expected = {}
    for split, per_class in counts.items():
        imgs, labs = [], []
        for label, (name, count) in enumerate(zip(classes, per_class, strict=True)):
            os.makedirs(root / split / name)
            for i in range(count):
                img = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
                Image.fromarray(img).save(root / split / name / f"{i:03d}.png")
                imgs.append(img)
                labs.append(label)
        (root / split / "cat" / "notes.txt").write_text("not an image")
        expected[split] = (np.stack(imgs), np.asarray(labs))
    return str(root), expected


# --------------------------------------------------------------------------------------
# Array sources.


@pytest.mark.parametrize("fmt", ["plain", "jpeg"])
def test_npz_source_reports_sizes_and_pixel_stats_and_yields_the_stored_pixels(
        fmt, plain_npz, jpeg_npz):
    path, images, labels = plain_npz if fmt == "plain" else jpeg_npz
    cfg = make_cfg(path=path)
    info = data.get_info(cfg)
    assert (info.num_train, info.num_eval, info.num_classes) == (N_TRAIN, N_TEST, N_CLASSES)
    assert info.image_shape == (6, 6, 3) and info.source == "npz"
    expected_mean = images["train"].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(info.mean, expected_mean, rtol=1e-6)
    np.testing.assert_allclose(info.std, images["train"].reshape(-1, 3).std(0), rtol=1e-5)
    source = data.create_source(cfg)
    assert source.info == info
    batches = list(source.eval_iterator(global_batch_size=4))
    got = np.concatenate([b["image"] for b in batches])[:N_TEST]
    np.testing.assert_array_equal(got, images["test"])
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:N_TEST],
                                  labels["test"])


def test_npz_sliced_splits_select_the_slice(plain_npz):
    path, images, _ = plain_npz
    source = data.create_source(make_cfg(path=path, train_split="train[:50%]",
                                         eval_split="train[-5:]"))
    assert source.info.num_train == round(N_TRAIN / 2) and source.info.num_eval == 5
    batch = next(iter(source.eval_iterator(global_batch_size=5)))
    np.testing.assert_array_equal(batch["image"], images["train"][-5:])


def test_folder_source_labels_sorted_class_folders_and_skips_non_images(image_folder):
    root, expected = image_folder
    cfg = make_cfg(source="folder", name="pets", path=root)
    info = data.get_info(cfg)
    assert (info.num_train, info.num_eval, info.num_classes) == (12, 5, 3)
    source = data.create_source(cfg)
    batches = list(source.eval_iterator(global_batch_size=2))
    assert len(batches) == 3 and [b["mask"].sum() for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches])[:5],
                                  expected["test"][0])
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:5],
                                  expected["test"][1])
    batch = next(source.train_iterator(seed=0, global_batch_size=4))
    assert batch["image"].shape == (4, 6, 6, 3)


def test_folder_source_resizes_to_image_size(image_folder):
    root, _ = image_folder
    source = data.create_source(make_cfg(source="folder", path=root, image_size=10))
    assert source.info.image_shape == (10, 10, 3)
    assert next(iter(source.eval_iterator(global_batch_size=5)))["image"].shape == \
        (5, 10, 10, 3)


def test_digits_split_is_stratified_and_independent_of_the_run():
    cfg = make_cfg(source="digits", name="digits", image_size=8)
    info = data.get_info(cfg)
    assert (info.num_train, info.num_eval, info.num_classes) == (1437, 360, 10)
    assert info.image_shape == (8, 8, 1) and len(info.mean) == 1
    source = data.create_source(cfg)
    labels = np.concatenate([b["label"][b["mask"] > 0]
                             for b in source.eval_iterator(global_batch_size=100)])
    assert len(labels) == 360 and np.bincount(labels).min() >= 35  # Stratified.
    images = np.concatenate([b["image"] for b in source.eval_iterator(global_batch_size=360)])
    assert images.dtype == np.uint8 and images.max() == 255 and images.min() == 0
    # The split never depends on the training seed: a second source sees the same eval.
    again = next(iter(data.create_source(cfg).eval_iterator(global_batch_size=360)))
    np.testing.assert_array_equal(again["image"], images)


def test_in_memory_train_order_is_the_seeded_permutation_and_resumes_exactly(plain_npz):
    path, images, _ = plain_npz
    source = data.create_source(make_cfg(path=path))
    steps = source.steps_per_epoch(8)
    assert steps == N_TRAIN // 8
    a = take(source.train_iterator(seed=3, global_batch_size=8), 3 * steps + 2)
    b = take(source.train_iterator(seed=3, global_batch_size=8), 3 * steps + 2)
    assert_batches_equal(a, b)
    c = next(source.train_iterator(seed=4, global_batch_size=8))
    assert not np.array_equal(a[0]["label"], c["label"]) or \
        not np.array_equal(a[0]["image"], c["image"])
    # Epoch order is exactly the documented permutation.
    perm = np.random.default_rng([3, 1]).permutation(N_TRAIN)
    np.testing.assert_array_equal(a[steps]["image"], images["train"][perm[:8]])
    assert a[0]["image"].dtype == np.uint8 and a[0]["label"].dtype == np.int32
    assert a[0]["image"].shape == (8, 6, 6, 3)
    # Each epoch visits distinct examples.
    epoch = np.concatenate([x["image"].reshape(8, -1) for x in a[:steps]])
    assert len(np.unique(epoch, axis=0)) == steps * 8
    for k in (1, steps - 1, steps, 2 * steps + 1):
        it = source.train_iterator(seed=3, global_batch_size=8)
        take(it, k)
        state = json.loads(json.dumps(it.state()))
        assert state["step"] == k and state["epoch"] == k // steps and state["seed"] == 3
        resumed = source.train_iterator(seed=3, global_batch_size=8,
                                        start_step=state["step"])
        assert_batches_equal(take(resumed, 3), take(it, 3))
        it.close()
        resumed.close()


@pytest.mark.parametrize("augment,image_size", [("cifar", 6), ("inception", 5)])
def test_in_memory_global_batch_is_independent_of_the_process_count(plain_npz, augment, image_size):
    path, _, _ = plain_npz
    source = data.create_source(make_cfg(path=path, augment=augment, image_size=image_size))
    one = take(source.train_iterator(seed=7, global_batch_size=6), 8)
    parts = [take(source.train_iterator(seed=7, global_batch_size=6, process_index=p,
                                        process_count=2), 8) for p in range(2)]
    for step, batch in enumerate(one):
        for key in ("image", "label"):
            merged = np.concatenate([parts[0][step][key], parts[1][step][key]])
            np.testing.assert_array_equal(merged, batch[key])
    assert one[0]["image"].shape == (6, image_size, image_size, 3)


@pytest.mark.parametrize("augment,image_size", [("cifar", 6), ("inception", 4)])
@pytest.mark.parametrize("process_count,batch", [(1, 4), (2, 4), (3, 6), (2, 30)])
def test_in_memory_eval_yields_each_example_once_over_all_processes(
        plain_npz, process_count, batch, augment, image_size):
    path, _, labels = plain_npz
    source = data.create_source(make_cfg(path=path, augment=augment, image_size=image_size))
    per_process = [list(source.eval_iterator(global_batch_size=batch, process_index=p,
                                             process_count=process_count))
                   for p in range(process_count)]
    counts = {len(b) for b in per_process}
    assert counts == {source.num_eval_batches(batch, process_count)}
    seen = []
    for step in range(counts.pop()):  # Global batch = processes' slices concatenated.
        for p in range(process_count):
            b = per_process[p][step]
            assert b["image"].shape == (batch // process_count, image_size, image_size, 3)
            assert b["mask"].dtype == np.float32 and set(np.unique(b["mask"])) <= {0.0, 1.0}
            seen.append(b["label"][b["mask"] > 0])
            assert not b["image"][b["mask"] == 0].any()
    np.testing.assert_array_equal(np.concatenate(seen), labels["test"])


def test_in_memory_inception_crops_are_deterministic_at_image_size(plain_npz):
    path, _, _ = plain_npz
    cfg = make_cfg(path=path, augment="inception", image_size=9)
    assert data.get_info(cfg).image_shape == (9, 9, 3)
    source = data.create_source(cfg)
    a = take(source.train_iterator(seed=1, global_batch_size=4), 3)
    b = take(source.train_iterator(seed=1, global_batch_size=4), 3)
    assert_batches_equal(a, b)
    assert a[0]["image"].shape == (4, 9, 9, 3) and a[0]["image"].dtype == np.uint8


def test_prefetch_thread_stops_on_close_and_when_the_iterator_is_dropped(plain_npz):
    path, _, _ = plain_npz
    source = data.create_source(make_cfg(path=path))

    def started_by(iterator):
        before = set(threading.enumerate())
        next(iterator)
        return [t for t in set(threading.enumerate()) - before
                if t.name == "smh_data_prefetch"]

    def wait_dead(threads):
        deadline = time.time() + 5
        while any(t.is_alive() for t in threads) and time.time() < deadline:
            time.sleep(0.02)
        return not any(t.is_alive() for t in threads)

    it = source.train_iterator(seed=0, global_batch_size=4)
    threads = started_by(it)
    assert len(threads) == 1 and threads[0].daemon
    it.close()
    assert wait_dead(threads)
    with pytest.raises(StopIteration):
        next(it)
    # Dropping an unclosed iterator stops its thread too (it holds no reference back).
    it = source.train_iterator(seed=0, global_batch_size=4)
    threads = started_by(it)
    del it
    gc.collect()
    assert wait_dead(threads)


def test_in_memory_sources_work_without_tensorflow_and_tfds_says_what_to_install():
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None\n"
        "sys.modules['tensorflow_datasets'] = None\n"
        "from smh_jax import data\n"
        "from smh_jax.errors import UserError\n"
        "from smh_jax.training import config_base\n"
        "cfg = config_base.base_config().dataset\n"
        "cfg.update(name='digits', source='digits', image_size=8, augment='cifar')\n"
        "src = data.create_source(cfg)\n"
        "it = src.train_iterator(seed=0, global_batch_size=32)\n"
        "assert next(it)['image'].shape == (32, 8, 8, 1)\n"
        "it.close()\n"
        "try:\n"
        "    data.get_info(config_base.base_config().dataset)\n"
        "except UserError as e:\n"
        "    assert 'tensorflow' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('tfds without tensorflow must raise UserError')\n"
        "print('ok')\n"
    )
    root = os.path.join(os.path.dirname(__file__), "..")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_missing_data_bad_splits_and_size_mismatches_are_user_errors(plain_npz, tmp_path):
    path, _, _ = plain_npz
    missing = str(tmp_path / "nope.npz")
    with pytest.raises(UserError, match=re.escape(missing)):
        data.get_info(make_cfg(path=missing))
    with pytest.raises(UserError, match="'validation'.*'test', 'train'"):
        data.get_info(make_cfg(path=path, eval_split="validation"))
    with pytest.raises(UserError, match="'tarin'"):
        data.create_source(make_cfg(path=path, train_split="tarin"))
    with pytest.raises(UserError, match="image_size=32.*6x6"):
        data.get_info(make_cfg(path=path, image_size=32))
    with pytest.raises(UserError, match=re.escape(str(tmp_path / "nodir"))):
        data.get_info(make_cfg(source="folder", path=str(tmp_path / "nodir")))


def test_impossible_batch_layouts_are_user_errors_naming_the_value(plain_npz):
    source = data.create_source(make_cfg(path=plain_npz[0]))
    with pytest.raises(UserError, match="global_batch_size=10.*process_count=3"):
        source.train_iterator(seed=0, global_batch_size=10, process_count=3)
    with pytest.raises(UserError, match="global_batch_size=10.*process_count=4"):
        source.eval_iterator(global_batch_size=10, process_count=4)
    with pytest.raises(UserError, match="global_batch_size=64.*37"):
        source.train_iterator(seed=0, global_batch_size=64)
    with pytest.raises(UserError, match="seed=-1"):
        source.train_iterator(seed=-1, global_batch_size=4)
    with pytest.raises(UserError, match="process_index=2"):
        source.train_iterator(seed=0, global_batch_size=4, process_index=2, process_count=2)


# --------------------------------------------------------------------------------------
# TFDS source, mocked offline (see the module docstring).

@pytest.fixture(scope="module")
def tfds_root(tmp_path_factory):
    pytest.importorskip("tensorflow_datasets")
    return mock_tfds_lib.write_metadata(str(tmp_path_factory.mktemp("tfds")))


@pytest.fixture
def mock_tfds(tfds_root):
    with mock_tfds_lib.mocked(tfds_root):
        yield tfds_root


def tfds_cfg(root, **kw):
    base = {"name": "cifar10", "source": "tfds", "data_dir": root, "train_split": "train",
            "eval_split": "test", "image_size": 32, "augment": "cifar", "shuffle_buffer": 64}
    base.update(kw)
    return make_cfg(**base)


def ids_of(batch):
    image = batch["image"].astype(np.int64)
    return image[:, 0, 0, 0] + 256 * image[:, 0, 0, 1]


def test_tfds_info_comes_from_metadata_with_published_stats(mock_tfds):
    info = data.get_info(tfds_cfg(mock_tfds))
    assert (info.num_train, info.num_eval, info.num_classes) == (200, 50, 10)
    assert info.image_shape == (32, 32, 3) and info.source == "tfds"
    assert info.mean == (125.3, 123.0, 113.9) and info.std == (63.0, 62.1, 66.7)
    assert data.get_info(tfds_cfg(mock_tfds, train_split="train[:90%]")).num_train == 180
    with pytest.raises(UserError, match="'valid'"):
        data.get_info(tfds_cfg(mock_tfds, eval_split="valid"))
    with pytest.raises(UserError, match="image_size=24.*32x32"):
        data.get_info(tfds_cfg(mock_tfds, image_size=24))


@pytest.mark.parametrize("cache", [False, True])
def test_tfds_train_is_deterministic_covers_an_epoch_and_resumes_exactly(mock_tfds, cache):
    source = data.create_source(tfds_cfg(mock_tfds, cache=cache))
    steps = source.steps_per_epoch(16)
    assert steps == 12
    a = take(source.train_iterator(seed=5, global_batch_size=16), steps + 3)
    b = take(source.train_iterator(seed=5, global_batch_size=16), steps + 3)
    assert_batches_equal(a, b)
    first = a[0]
    assert first["image"].shape == (16, 32, 32, 3) and first["image"].dtype == np.uint8
    assert first["label"].dtype == np.int32
    assert first["label"].min() >= 0 and first["label"].max() < 10
    ids = np.concatenate([ids_of(x) for x in a[:steps]])
    assert len(set(ids)) == steps * 16 and ids.max() < 200  # An epoch has no repeats.
    np.testing.assert_array_equal(first["label"], (ids_of(first) * 7) % 10)
    other = next(source.train_iterator(seed=6, global_batch_size=16))
    assert not np.array_equal(ids_of(other), ids_of(first))
    # The next epoch is a different order.
    assert not np.array_equal(ids_of(a[steps]), ids_of(a[0]))
    for k in (2, steps):
        it = source.train_iterator(seed=5, global_batch_size=16)
        take(it, k)
        state = json.loads(json.dumps(it.state()))
        assert (state["step"], state["epoch"]) == (k, k // steps)
        resumed = source.train_iterator(seed=5, global_batch_size=16,
                                        start_step=state["step"])
        assert_batches_equal(take(resumed, 2), a[k:k + 2])
        it.close()
        resumed.close()


def test_tfds_train_shards_of_two_processes_are_disjoint(mock_tfds):
    source = data.create_source(tfds_cfg(mock_tfds))
    steps = source.steps_per_epoch(8)
    per_process = [np.concatenate([ids_of(b) for b in take(source.train_iterator(
        seed=0, global_batch_size=8, process_index=p, process_count=2), steps)])
        for p in range(2)]
    assert all(len(set(ids)) == len(ids) == steps * 4 for ids in per_process)
    assert not set(per_process[0]) & set(per_process[1])
    assert set(per_process[0]) <= set(range(100)) and set(per_process[1]) <= set(range(100, 200))


@pytest.mark.parametrize("process_count,batch", [(1, 16), (2, 8), (3, 12), (2, 200)])
def test_tfds_eval_yields_each_example_once_over_all_processes(mock_tfds, process_count, batch):
    source = data.create_source(tfds_cfg(mock_tfds))
    per_process = [list(source.eval_iterator(global_batch_size=batch, process_index=p,
                                             process_count=process_count))
                   for p in range(process_count)]
    assert {len(b) for b in per_process} == {source.num_eval_batches(batch, process_count)}
    seen = []
    for batches in per_process:
        for b in batches:
            assert b["image"].shape == (batch // process_count, 32, 32, 3)
            assert b["mask"].dtype == np.float32
            valid = b["mask"] > 0
            assert (b["image"][valid][:, 0, 0, 2] == 1).all()  # From the test split.
            assert not b["image"][~valid].any()
            seen.append(ids_of(b)[valid])
    assert sorted(np.concatenate(seen).tolist()) == list(range(50))


def test_tfds_eval_pads_a_process_whose_shard_is_empty(mock_tfds):
    source = data.create_source(tfds_cfg(mock_tfds))
    batches = list(source.eval_iterator(global_batch_size=64, process_index=60,
                                        process_count=64))  # Shard 60 of 50 examples: empty.
    assert len(batches) == 1 and batches[0]["mask"].sum() == 0
    assert batches[0]["image"].shape == (1, 32, 32, 3)


def test_tfds_inception_crops_png_images_without_losing_examples(mock_tfds):
    # cifar10 stores PNGs, so this is the decode_image + crop path (not decode_and_crop_jpeg).
    source = data.create_source(tfds_cfg(mock_tfds, augment="inception", image_size=24))
    assert source.info.image_shape == (24, 24, 3)
    steps = source.steps_per_epoch(8)
    batches = take(source.train_iterator(seed=0, global_batch_size=8), steps)
    assert batches[0]["image"].shape == (8, 24, 24, 3)
    ids = np.concatenate([ids_of(b) for b in batches])  # Constant planes survive crops.
    assert len(set(ids)) == len(ids) == steps * 8
    seen = [ids_of(b)[b["mask"] > 0] for b in source.eval_iterator(global_batch_size=16)]
    assert sorted(np.concatenate(seen).tolist()) == list(range(50))


def test_tfds_imagenet_inception_crops_are_stateless_and_resumable(mock_tfds):
    cfg = tfds_cfg(mock_tfds, name="imagenet2012", eval_split="validation", image_size=24,
                   augment="inception", shuffle_buffer=16)
    info = data.get_info(cfg)
    assert (info.num_train, info.num_eval, info.num_classes) == (48, 21, 1000)
    assert info.image_shape == (24, 24, 3) and info.mean == (123.675, 116.28, 103.53)
    source = data.create_source(cfg)
    a = take(source.train_iterator(seed=2, global_batch_size=8), 7)
    assert a[0]["image"].shape == (8, 24, 24, 3) and a[0]["image"].dtype == np.uint8
    assert a[0]["image"].std() > 1  # Real pixels, not padding.
    b = take(source.train_iterator(seed=2, global_batch_size=8), 7)
    assert_batches_equal(a, b)  # Stateless crops: same seed, same pixels.
    it = source.train_iterator(seed=2, global_batch_size=8, start_step=5)
    assert_batches_equal(take(it, 2), a[5:7])
    for process_count in (1, 2):
        batches = [list(source.eval_iterator(global_batch_size=10, process_index=p,
                                             process_count=process_count))
                   for p in range(process_count)]
        assert len({len(x) for x in batches}) == 1
        masks = np.concatenate([b["mask"] for x in batches for b in x])
        assert masks.sum() == 21
        assert all(b["image"].shape == (10 // process_count, 24, 24, 3)
                   for x in batches for b in x)
    with pytest.raises(UserError, match="augment='cifar'.*fixed-size"):
        data.get_info(tfds_cfg(mock_tfds, name="imagenet2012", eval_split="validation",
                               image_size=24, augment="cifar"))


def test_tfds_unprepared_or_unknown_dataset_says_how_to_prepare_it(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    empty = str(tmp_path / "empty")
    with pytest.raises(UserError, match=re.escape(f"tfds build cifar10 --data_dir={empty}")):
        data.get_info(tfds_cfg(empty))
    with pytest.raises(UserError, match=re.escape(f"{empty}/downloads/manual")):
        data.get_info(tfds_cfg(empty, name="imagenet2012", image_size=224,
                               augment="inception"))
    with pytest.raises(UserError, match="'no_such_dataset_xyz'"):
        data.get_info(tfds_cfg(empty, name="no_such_dataset_xyz"))
