"""recon.app.viz: comparison figures (axes, shared error scale, mask panel), error maps, atomic saving."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from recon.errors import OutputError, UsageError
from recon.app.viz import comparison_figure, error_map, error_scale, mask_image, save_figure


def _images(seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    ref = rng.random((12, 10))
    return ref, {"a": ref + 0.1, "b": ref - 0.3 * rng.random((12, 10)), "c": np.zeros((12, 10))}


def test_error_map_is_absolute_difference() -> None:
    ref = np.array([[1.0, 2.0], [3.0, 4.0]])
    rec = np.array([[1.5, 1.0], [3.0, 6.0]])
    np.testing.assert_array_equal(error_map(ref, rec), [[0.5, 1.0], [0.0, 2.0]])
    # complex inputs are compared as magnitudes, as the metrics do: |3+4j| = 5
    np.testing.assert_allclose(error_map(np.array([5.0]), np.array([3 + 4j])), [0.0], atol=1e-12)
    with pytest.raises(UsageError, match="differ in shape"):
        error_map(np.zeros((2, 2)), np.zeros((2, 3)))


def test_error_scale_is_pooled_percentile() -> None:
    errors = [np.arange(100.0), np.arange(100.0, 200.0)]
    assert error_scale(errors, 50) == pytest.approx(99.5)
    assert error_scale([np.zeros(4)]) == 1.0  # a perfect reconstruction still gets a usable scale


def test_comparison_figure_axes_and_shared_error_scale() -> None:
    ref4, recs4 = _images(0)
    ref8, recs8 = _images(1)
    fig = comparison_figure({"4x": ref4, "8x": ref8}, {"4x": recs4, "8x": recs8},
                            masks={"4x": np.arange(10) % 2 == 0})
    # 2 accelerations x (image row + error row) x (reference + 3 methods) panels + 1 colour bar
    assert len(fig.axes) == 2 * 2 * 4 + 1
    panels = [ax for ax in fig.axes if ax.images]
    titles = [ax.get_title() for ax in panels]
    assert titles.count("a") == 2 and titles.count("sampling mask") == 1
    err_images = [ax.images[0] for ax in panels if ax.images[0].get_cmap().name == "inferno"]
    assert len(err_images) == 2 * 3
    clims = {im.get_clim() for im in err_images}
    assert len(clims) == 1  # one colour scale for every error map
    expected = error_scale([error_map(r, x) for r, xs in ((ref4, recs4), (ref8, recs8)) for x in xs.values()])
    assert clims.pop() == (0.0, pytest.approx(expected))
    # the drawn error maps are |ref - rec|, row by row, in column order
    np.testing.assert_allclose(np.asarray(err_images[0].get_array()), np.abs(ref4 - recs4["a"]))
    np.testing.assert_allclose(np.asarray(err_images[-1].get_array()), np.abs(ref8 - recs8["c"]))
    plt.close("all")


def test_comparison_figure_titles_and_bad_rows() -> None:
    ref, recs = _images()
    fig = comparison_figure({"4x": ref}, {"4x": recs}, titles={"4x": {"b": "b\n30.00 dB"}}, error_vmax=0.5)
    assert len(fig.axes) == 2 * 4 + 1
    assert "b\n30.00 dB" in [ax.get_title() for ax in fig.axes]
    assert {ax.images[0].get_clim() for ax in fig.axes if ax.images and ax.images[0].get_cmap().name == "inferno"} \
        == {(0.0, 0.5)}
    with pytest.raises(UsageError, match="same row labels"):
        comparison_figure({"4x": ref}, {"8x": recs})
    with pytest.raises(UsageError, match="has methods"):
        comparison_figure({"4x": ref, "8x": ref}, {"4x": recs, "8x": {"a": ref}})
    with pytest.raises(UsageError, match="2D image"):
        comparison_figure({"4x": ref[None]}, {"4x": recs})


def test_mask_image_broadcasts_columns() -> None:
    m = mask_image(np.array([1, 0, 1], dtype=bool), (2, 3))
    np.testing.assert_array_equal(m, [[1, 0, 1], [1, 0, 1]])
    with pytest.raises(UsageError, match="does not fit"):
        mask_image(np.ones(4), (2, 3))


def test_save_figure_atomic_and_no_silent_overwrite(tmp_path: Path) -> None:
    ref, recs = _images()
    fig = comparison_figure({"4x": ref}, {"4x": recs})
    path = save_figure(fig, tmp_path / "fig.png")
    assert plt.imread(path).ndim == 3
    with pytest.raises(OutputError, match="exists"):
        save_figure(fig, path)
    save_figure(fig, path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]  # no temporary files left behind
    plt.close("all")
