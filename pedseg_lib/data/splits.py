"""Seeded, deterministic train/validation/test splits of a dataset's indices."""

from __future__ import annotations

import torch


def split_indices(n: int, test_size: int = 50, seed: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic seeded train/test split of ``range(n)``.

    Returns:
        (train, test): sorted index lists.

    Raises:
        ValueError: if ``test_size`` is not in [0, n).
    """
    if not 0 <= test_size < n:
        raise ValueError(f"test_size={test_size} must be >= 0 and smaller than the dataset size {n}")
    perm = _permutation(n, seed)
    return sorted(perm[test_size:]), sorted(perm[:test_size])


def _permutation(n: int, seed: int) -> list[int]:
    """The seeded permutation of ``range(n)`` that every split takes its sets from, in order."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def split_train_val_test(n: int, test_size: int, val_size: int, seed: int = 0) -> dict[str, list[int]]:
    """Deterministic seeded train/validation/test split of ``range(n)``.

    The test set is exactly :func:`split_indices`' test set for the same ``n``, ``test_size`` and ``seed``;
    the validation set is the next ``val_size`` images of the same seeded permutation, so it is drawn from
    :func:`split_indices`' training images; the training set is the rest. With ``val_size=0`` the training
    set is :func:`split_indices`' training set.

    Args:
        n: number of images in the dataset.
        test_size: images held out as the test set (at least 1).
        val_size: images taken out of the non-test images for validation (0 = none).
        seed: seed of the permutation.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``: sorted, disjoint index lists that cover ``range(n)``.

    Raises:
        ConfigError: ``test_size`` is not positive, ``val_size`` is negative, or together they leave no
            training image.
    """
    from pedseg_lib.errors import ConfigError

    if test_size < 1 or val_size < 0:
        raise ConfigError(f"test_size={test_size} and val_size={val_size}: test_size must be at least 1 and "
                          "val_size at least 0; fix them.")
    if test_size + val_size >= n:
        raise ConfigError(f"test_size={test_size} + val_size={val_size} leave no training image of the {n} in the "
                          "dataset: lower test_size or val_size.")
    perm = _permutation(n, seed)
    return {
        "train": sorted(perm[test_size + val_size:]),
        "val": sorted(perm[test_size:test_size + val_size]),
        "test": sorted(perm[:test_size]),
    }


def fit_split_sizes(n: int, test_size: int, val_size: int, adjustable: bool) -> tuple[int, int, str | None]:
    """The test and validation sizes a dataset of ``n`` images gets, and a sentence when they were reduced.

    A preset's sizes (``adjustable``) are meant for Penn-Fudan's 170 images. When they leave less than a fifth of
    the images for training, each shrinks to a fifth of the images (at least 1; a validation size of 0 stays 0;
    never more than asked), so that 3 images split 1/1/1 and 10 split 6/2/2. Sizes set by hand are kept.

    Args:
        n: number of images.
        test_size: the config's test size.
        val_size: the config's validation size.
        adjustable: the sizes are the preset's defaults, not set by hand.

    Returns:
        ``(test_size, val_size, note)``; ``note`` is None when nothing changed.

    Raises:
        ConfigError: fewer than 2 images (one to train on, one to test).
    """
    from pedseg_lib.errors import ConfigError

    if n < 2:
        raise ConfigError(f"the dataset has {n} image(s): a run needs at least 2 (one to train on, one to test); "
                          "annotate more images")
    if not adjustable or 5 * (n - test_size - val_size) >= n:
        return test_size, val_size, None
    fifth = max(1, n // 5)
    test, val = min(test_size, fifth), min(val_size, fifth)
    val = min(val, n - test - 1)
    note = (f"the preset's test_size={test_size} and val_size={val_size} leave too few of the {n} images for "
            f"training: using test_size={test} and val_size={val} (a fifth of the images each, at least 1); set "
            "them with --set test_size=N --set val_size=N")
    return test, val, note
