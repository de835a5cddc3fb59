"""scripts/build_corpus.py's real recordings (scripts/corpus/real.py): which licences it keeps, what it refuses, and
the credits it writes for the weights; the top file still runs as documented."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))
from corpus import real as bc  # noqa: E402


@pytest.mark.parametrize("licence, tier", [
    ("CC0", "permissive"), ("CC0-1.0", "permissive"), ("public-domain", "permissive"), ("CC-BY-3.0", "permissive"),
    ("CC-BY-4.0", "permissive"), ("MIT", "permissive"), ("CC-BY-SA-3.0 or CC-BY-3.0", "permissive"),
    ("CC-BY-SA-3.0", "share-alike"), ("CC-BY-SA-4.0", "share-alike"), ("GPL-2+", None), ("GPL-2 or CC-BY-SA-3.0",
                                                                                         "share-alike"),
    ("CC-BY-NC-3.0", None), ("", None),
])
def test_licence_tiers(licence, tier):
    assert bc.licence_tier(licence) == tier
    assert bc.allowed(licence, "share-alike") == (tier is not None)
    assert bc.allowed(licence, "permissive") == (tier == "permissive")


@pytest.mark.parametrize("package", ["hydrogen-drumkits", "asterisk-core-sounds-en-wav"])
def test_evaluation_audio_is_refused_before_anything_is_fetched(tmp_path, package):
    src = bc.RealSource(bc._deb(package, "1", "0" * 64, f"x/{package}.deb"), ("*.wav",), best="CC0")
    with pytest.raises(ValueError, match="evaluation audio"):
        bc.build_real_source(src, tmp_path / "corpus", tmp_path / "cache", "permissive")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "corpus").exists()


def test_credits_name_every_holder_per_package_and_licence(tmp_path):
    rows = [
        {"package": "supertuxkart-data", "version": "1.4", "licence": "CC-BY-3.0", "copyright": "2009 Mike Koenig",
         "seconds": 90.0},
        {"package": "supertuxkart-data", "version": "1.4", "licence": "CC-BY-3.0", "copyright": "2021 Typhon306",
         "seconds": 30.0},
        {"package": "supertuxkart-data", "version": "1.4", "licence": "CC0", "copyright": "", "seconds": 6.0},
        {"package": "openclonk-data", "version": "8.1-3", "licence": "CC-BY-3.0", "copyright": "", "seconds": 60.0},
    ]
    bc.write_credits(rows, tmp_path / "CREDITS.md")
    text = (tmp_path / "CREDITS.md").read_text()
    assert "## supertuxkart-data 1.4 (Debian)" in text and "## openclonk-data 8.1-3 (Debian)" in text
    assert "- CC-BY-3.0: 2 clips, 2.0 min; 2009 Mike Koenig; 2021 Typhon306" in text
    assert "- CC0: 1 clips, 0.1 min; game music and sound effects" in text  # no holder named: the package's note
    assert "K-Pone" in text  # openclonk's copyright file names nobody: its REAL_SOURCES note does
    assert not list(tmp_path.glob("*.tmp"))


def test_build_corpus_makes_textures_alone(tmp_path):
    """`python scripts/build_corpus.py OUT --n-speech 0 --n-music 0 --real none` needs no espeak-ng, fluidsynth or
    network; the clips are a pure function of (seed, kind, index), so a second run makes none."""
    args = [sys.executable, str(SCRIPTS / "build_corpus.py"), str(tmp_path), "--n-speech", "0", "--n-music", "0",
            "--n-texture", "3", "--real", "none"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "texture").iterdir()) == [f"texture_{i:05d}.wav" for i in range(3)]
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert "[texture] 3 present, 0 to make" in again.stdout
