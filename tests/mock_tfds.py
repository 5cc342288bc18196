"""Offline fake TFDS datasets (cifar10, imagenet2012) for tests, via tfds.testing.mock_data.

Checked with tensorflow-datasets 4.9.10: `MockPolicy.USE_CODE` (and AUTO, which falls
back to it because the pip package ships no metadata) builds the builder from code, so
`info.splits` is empty and split sizes / slicing / even_splits cannot be tested. We
therefore write real `dataset_info.json` + `features.json` (from the code builders, with
made-up split sizes) and mock with `policy=MockPolicy.USE_FILES, data_dir=<that dir>`.
The default fake generator ignores the requested split (every split yields the same
examples), so `as_dataset_fn` is replaced by `fake_as_dataset`, which honours the split's
file instructions (slices, even_splits, file shuffling via ReadConfig.shuffle_seed) and
stamps each example's id into its pixels. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import re
import runpy
import sys

import numpy as np

TFDS_SPLITS = {
    "cifar10": {"train": [50, 50, 50, 50], "test": [25, 25]},
    "imagenet2012": {"train": [24, 24], "validation": [21]},
}
_SPLIT_CODE = {"train": 0, "test": 1, "validation": 2}


def write_metadata(root: str) -> str:
    """Writes dataset_info.json/features.json for every dataset of TFDS_SPLITS under root."""
    import tensorflow_datasets as tfds

    for name, splits in TFDS_SPLITS.items():
        builder = tfds.builder(name, data_dir=str(root))
        infos = [
            tfds.core.SplitInfo(
                name=split, shard_lengths=lengths, num_bytes=0,
                filename_template=tfds.core.ShardedFileTemplate(
                    data_dir=builder.data_path, dataset_name=builder.name, split=split,
                    filetype_suffix="tfrecord"))
            for split, lengths in splits.items()
        ]
        builder.info.set_splits(tfds.core.SplitDict(infos))
        builder.data_path.mkdir(parents=True, exist_ok=True)
        builder.info.write_to_directory(builder.data_path)
    return str(root)


def fake_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False,
                     **kwargs):
    """Replaces FileReaderBuilder._as_dataset: honours the split's file instructions."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    instructions = list(self.info.splits[split].file_instructions)
    if shuffle_files:
        order = np.random.default_rng(read_config.shuffle_seed).permutation(len(instructions))
        instructions = [instructions[i] for i in order]
    ids, codes = [], []
    for fi in instructions:
        split_name, shard = re.search(r"-(\w+)\.tfrecord-(\d+)-of-",
                                      os.path.basename(fi.filename)).groups()
        first = sum(TFDS_SPLITS[self.name][split_name][:int(shard)])
        ids.append(np.arange(first + fi.skip, first + fi.skip + fi.take))
        codes.append(np.full(fi.take, _SPLIT_CODE[split_name]))
    num_classes = self.info.features["label"].num_classes
    fixed = self.info.features["image"].shape[0] is not None
    encode = decoders is not None and isinstance(decoders.get("image"),
                                                 tfds.decode.SkipDecoding)
    png = self.info.features["image"].encoding_format in (None, "png")

    def make(i, code):
        if fixed:  # Pixels carry (id % 256, id // 256, split code): exact ids downstream.
            image = tf.stack([tf.fill((32, 32), tf.cast(v, tf.uint8))
                              for v in (i % 256, i // 256, code)], axis=-1)
        else:
            h, w = 40 + (i * 13) % 50, 40 + (i * 29) % 50
            yy = tf.range(h, dtype=tf.int64)[:, None, None] * 3
            xx = tf.range(w, dtype=tf.int64)[None, :, None] * 5
            image = tf.cast((yy + xx + i * 7 + tf.range(3, dtype=tf.int64)) % 256, tf.uint8)
        if encode:
            image = tf.io.encode_png(image) if png else tf.io.encode_jpeg(image)
        return {"image": image, "label": (i * 7 + code) % num_classes}

    ids = np.concatenate(ids).astype(np.int64)
    return tf.data.Dataset.from_tensor_slices((ids, np.concatenate(codes))).map(make)


@contextlib.contextmanager
def mocked(root: str):
    """TFDS reads the metadata under root and serves fake_as_dataset's examples."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_FILES, data_dir=root,
                                as_dataset_fn=fake_as_dataset):
        yield root


def main(argv: list[str]) -> None:
    """python tests/mock_tfds.py ROOT SCRIPT [ARGS...]: runs SCRIPT with TFDS mocked.

    This is how the CLI tests run `python train.py ...` on mock TFDS data in a subprocess.
    """
    root, script, args = argv[1], argv[2], argv[3:]
    write_metadata(root)
    sys.argv = [script] + args
    with mocked(root):
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv)


