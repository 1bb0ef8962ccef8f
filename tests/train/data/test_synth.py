from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stopsign.train.data import layout
from stopsign.train.data.backface import is_back_face
from stopsign.train.data.check import check_dataset, errors
from stopsign.train.data.cli import main
from stopsign.train.data.synth.distractors import DISTRACTOR_KINDS, build_distractors
from stopsign.train.data.synth.generate import SceneRenderer
from stopsign.train.data.synth.scene import SIGN_CONFUSERS, SceneConfig
from stopsign.train.data.synth.signs import build_library, octagon, stop_sign


def test_octagon_is_regular_with_the_requested_width() -> None:
    pts = octagon((0.0, 0.0), 10.0)
    sides = np.linalg.norm(np.roll(pts, -1, 0) - pts, axis=1)
    assert np.allclose(sides, sides[0])
    assert pts[:, 0].max() == pytest.approx(10.0) and pts[:, 1].min() == pytest.approx(-10.0)


def test_library_sprites_are_consistent() -> None:
    for kind, sprites in build_library().items():
        for s in sprites:
            assert s.bgr.shape[:2] == s.alpha.shape, kind
            assert 0.3 < s.alpha.mean() <= 1.0, kind


def test_stop_sprite_is_red_and_back_is_grey() -> None:
    front = stop_sign()
    full = (0, 0, front.bgr.shape[1], front.bgr.shape[0])
    assert not is_back_face(front.bgr, full)
    assert is_back_face(build_library()["octagon_back"][0].bgr, full)


def test_scenes_are_seeded_and_boxes_fit_the_sign() -> None:
    renderer = SceneRenderer(seed=7, size=128, photos=[], scene=SceneConfig(p_stop=1.0, p_occlusion=0.0))
    a, b = renderer.render(3), renderer.render(3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.stop_xyxy, b.stop_xyxy)
    assert not np.array_equal(renderer.render(4).image, a.image)
    sizes = []
    for i in range(30):
        scene = renderer.render(i)
        assert scene.image.shape == (128, 128, 3) and scene.image.dtype == np.uint8
        assert scene.role == "stop"
        for x1, y1, x2, y2 in scene.stop_xyxy:
            assert 0 <= x1 < x2 <= 128 and 0 <= y1 < y2 <= 128
            sizes.append(max(x2 - x1, y2 - y1))
    assert min(sizes) >= 8 and max(sizes) <= 128 * 0.75


def test_synth_cli_writes_a_valid_canonical_set(make_dataset, tmp_path: Path) -> None:
    backgrounds = make_dataset(n_stop=1, n_neg=3)
    out = tmp_path / "synth"
    assert (
        main(
            [
                "synth",
                "--out",
                str(out),
                "--n",
                "12",
                "--seed",
                "1",
                "--size",
                "128",
                "--backgrounds",
                str(backgrounds),
            ]
        )
        == 0
    )
    assert len(layout.list_images(out)) == 12
    assert errors(check_dataset(out)) == []
    records = layout.read_sources(out)
    assert {r.source for r in records.values()} == {"synthetic"}
    assert {r.role for r in records.values()} <= set(layout.ROLES)
    img = cv2.imread(str(out / "images/synth_s1_000000.jpg"))
    assert img.shape == (128, 128, 3)
    assert main(["synth", "--out", str(out), "--n", "3"]) == 2  # never writes into a non-empty folder


def test_distractor_sprites_are_consistent_and_red_where_it_matters() -> None:
    library = build_distractors()
    assert set(library) == set(DISTRACTOR_KINDS)
    for kind, sprites in library.items():
        for s in sprites:
            assert s.kind == kind
            assert s.bgr.shape[:2] == s.alpha.shape, kind
            assert 0.3 < s.alpha.mean() <= 1.0, kind
            x0, y0 = s.outline.min(0)
            x1, y1 = s.outline.max(0)
            assert 0 <= x0 < x1 <= s.bgr.shape[1] and 0 <= y0 < y1 <= s.bgr.shape[0], kind
    # The point of these sprites: red in BGR, red lamp lit.
    hydrant = library["fire_hydrant"][0]
    b, g, r = hydrant.bgr[hydrant.alpha > 0.5].mean(0)
    assert r > 2 * g and r > 2 * b
    assert np.array_equal(build_distractors()["red_foliage"][0].bgr, library["red_foliage"][0].bgr)  # seeded


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (SIGN_CONFUSERS, set(SIGN_CONFUSERS)),
        (("fire_hydrant", "traffic_light"), {"fire_hydrant", "traffic_light"}),
    ],
)
def test_scenes_place_only_the_configured_confusers(kinds: tuple[str, ...], expected: set[str]) -> None:
    cfg = SceneConfig(p_stop=0.0, p_confusers_without_stop=1.0, confuser_kinds=kinds)
    renderer = SceneRenderer(seed=3, size=128, photos=[], scene=cfg)
    placed = set()
    for i in range(60):
        scene = renderer.render(i)
        assert len(scene.stop_xyxy) == 0  # a distractor is never labelled a stop sign
        placed |= {name for name, _ in scene.confusers}
    assert placed == expected


def test_synth_cli_rejects_an_unknown_confuser_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "synth"
    assert main(["synth", "--out", str(out), "--n", "2", "--size", "64", "--confusers", "yield,mailbox"]) == 2
    assert "mailbox" in capsys.readouterr().err
    assert not out.exists()
    assert main(["synth", "--out", str(out), "--n", "2", "--size", "64", "--confusers", " , "]) == 2
    assert "no confuser kinds given" in capsys.readouterr().err
    assert main(["synth", "--out", str(out), "--n", "2", "--size", "64", "--confusers", "signs"]) == 0
