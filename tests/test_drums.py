"""The real drum task (eval/drums.py) and the Debian sources behind it (eval/debian.py), without downloading:
a kit folder in Hydrogen's own format, the labels of the real kits' instrument names, DEP-5 licence matching."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, run_env
from eval import drums
from eval.taskdir import check_task
from eval.debian import Deb, PackageUnavailable, fetch, file_licences

KIT_XML = """<?xml version="1.0" encoding="UTF-8"?>
<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">
 <name>{name}</name>
 <instrumentList>
{instruments}
 </instrumentList>
</drumkit_info>
"""
INSTRUMENT = "  <instrument><id>{i}</id><name>{name}</name><layer><filename>{file}</filename></layer></instrument>"


def write_kit(root, name, instruments, speech_wavs, offset):
    """A Hydrogen kit folder: drumkit.xml (namespaced, as the real ones) and one real recording per instrument."""
    kit = root / name
    kit.mkdir(parents=True)
    rows = []
    for i, inst in enumerate(instruments):
        audio, sr = sf.read(speech_wavs[(offset + i) % len(speech_wavs)])
        sf.write(kit / f"s{i}.flac", audio[: sr - 400 * i], sr)  # 16 kHz, most shorter than 1 s: padded
        rows.append(INSTRUMENT.format(i=i, name=inst, file=f"s{i}.flac"))
    (kit / "drumkit.xml").write_text(KIT_XML.format(name=name, instruments="\n".join(rows)))


@pytest.fixture(scope="module")
def kits(tmp_path_factory, speech_wavs):
    root = tmp_path_factory.mktemp("drumkits")
    pieces = ["Kick", "Snare", "Closed HH", "Tom Low", "Crash", "Cowbell", "Stick"]
    for k, name in enumerate(["Millo-Drums_v.1", "Millo_MultiLayered2", "KitA", "KitB", "KitC", "KitD"]):
        write_kit(root, name, pieces, speech_wavs, offset=7 * k)
    return root


def test_the_real_kits_instrument_names_get_the_drum_they_name():
    names = {  # instrument names as the kits of hydrogen-drumkits spell them
        "BassDrum": "kick", "Kick (Tama Superstar 22\")": "kick", "c3 - bass drum 1": "kick",
        "Snare Rimshot (Pearl Free Floating Maple 14x3.5)": "snare", "Rim Click (Pearl 14x3.5)": "snare",
        "Sabian Hat Swish": "hihat", "Side OHH": "hihat", "Hi Hat Free": "hihat", "Floor Tom": "tom", "tomhi2": "tom",
        "Paiste Bell": "cymbal", "Crash/Ride Bell (Paiste Rude Crash/Ride 18\")": "cymbal", "Ride Bell": "cymbal",
        "China (Paiste Alpha 18\")": "cymbal", "Cowbell": "percussion", "Djembe1 Slap": "percussion",
        "Dununba1 Bell Mute": "percussion", "Hand Clap": "percussion",
        "Pearl Side Stick": None, "Stick": None, "Zap 1": None, "FX": None, "Click": None, "VariBreaks Drum 1": None,
        "17": None, "f#4 - ": None,
    }
    assert {n: drums.label_of(n) for n in names} == names


def test_task_is_a_hear_task_with_folds_made_of_whole_kit_groups(kits, tmp_path):
    clips = drums.collect(kits)
    assert len(clips) == 6 * 6  # "Stick" is left out
    task = drums.write_task(clips, tmp_path, "test kits")
    meta = check_task(task, 16000)
    assert meta["split_mode"] == "presplit_kfold" and meta["nfolds"] == 5 and len(meta["splits"]) == 5
    by_fold = meta["kits_by_fold"]
    millo = [f for f, kits_ in by_fold.items() if "Millo-Drums_v.1" in kits_]
    assert "Millo_MultiLayered2" in by_fold[millo[0]]  # kits sharing recordings never sit on both sides
    assert sorted(k for ks in by_fold.values() for k in ks) == sorted(p.name for p in kits.iterdir())
    assert meta["class_balance"]["all"] == {label: 6 for label in drums.LABELS}
    lengths = {sf.info(f).frames for f in (task / "16000").glob("*/*.wav")}
    assert lengths == {16000}
    labels = {}
    for split in meta["splits"]:
        labels.update(json.loads((task / f"{split}.json").read_text()))
    assert len(labels) == 36 and all(v[0] in drums.LABELS for v in labels.values())


def test_a_folder_of_the_tasks_name_that_is_not_ours_is_refused_and_ours_is_rebuilt(kits, tmp_path):
    """eval.taskwrite's guard: the drum builder deleted any folder named like its task before; now a folder it did
    not write is refused and kept, and one it wrote (of another source) is replaced."""
    from hear_maeast.errors import BadInput

    clips = drums.collect(kits)
    foreign = tmp_path / drums.TASK
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(BadInput, match="was not written by hear-maeast"):
        drums.write_task(clips, tmp_path, "test kits")
    assert (foreign / "notes.txt").read_text() == "mine" and not (tmp_path / f"{drums.TASK}.partial").exists()
    (foreign / "notes.txt").unlink()
    foreign.rmdir()
    first = drums.write_task(clips, tmp_path, "test kits")
    again = drums.write_task(clips, tmp_path, "other kits")  # ours: replaced
    assert again == first and json.loads((again / "task_metadata.json").read_text())["source"] == "other kits"


def test_duplicate_and_silent_samples_are_dropped(kits, tmp_path, speech_wavs):
    (tmp_path / "KitA").symlink_to(kits / "KitA")
    write_kit(tmp_path, "ZCopy", ["Kick", "Snare"], speech_wavs, offset=14)  # KitA's first two recordings again
    sf.write(tmp_path / "ZCopy" / "silent.wav", np.zeros(8000), 8000)
    xml = (tmp_path / "ZCopy" / "drumkit.xml").read_text()
    (tmp_path / "ZCopy" / "drumkit.xml").write_text(xml.replace("</instrumentList>", INSTRUMENT.format(
        i=9, name="Tom Hi", file="silent.wav") + "\n </instrumentList>"))
    names = [c["kit"] for c in drums.collect(tmp_path)]
    assert names.count("ZCopy") == 0 and names.count("KitA") == 6


def test_the_tasks_drums_command_says_why_when_the_package_cannot_be_had(tmp_path):
    bad = tmp_path / "cache"
    bad.mkdir()
    (bad / drums.DEB.filename).write_bytes(b"not the package")
    env = run_env()
    # no apt-get, and every mirror unreachable at once: what a machine without Debian's archive sees
    env.update(PATH="/nonexistent", PYTHONPATH=str(REPO), http_proxy="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9", no_proxy="")
    res = subprocess.run([sys.executable, "-m", "hear_maeast.cli", "tasks", "drums", str(tmp_path / "t"), "--cache",
                          str(bad)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "hydrogen-drumkits" in res.stderr and "another SHA-256" in res.stderr and str(bad) in res.stderr
    assert not (tmp_path / "t").exists()


def test_dep5_patterns_match_installed_paths(tmp_path):
    root = tmp_path / "pkg"
    doc = root / "usr/share/doc/demo"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: 2016 Someone\nLicense: MIT\n\n"
        "Files: images/*\nCopyright: Painter\nLicense: CC-BY-SA-4.0\n\n"
        "Files: etc/samples/ambi_choir.flac\n sounds/*\nCopyright: 2013 Exsomniel\nLicense: CC0\n")
    files = [root / "usr/share/demo/samples/ambi_choir.flac", root / "usr/share/demo/sounds/a.ogg",
             root / "usr/share/demo/music/b.ogg"]
    got = file_licences(root, "demo", files)
    assert [got[f][0] for f in files] == ["CC0", "CC0", "MIT"]  # never "images/*": a bare * would match all
    assert got[files[0]][1] == "2013 Exsomniel"


def test_a_cached_deb_is_used_only_when_its_sha256_matches(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("PATH", "/nonexistent")  # no apt-get
    data = b"a tiny stand-in for a .deb"
    deb = Deb("demo", "1.0", hashlib.sha256(data).hexdigest(), "pool/main/d/demo/demo_1.0_all.deb")
    (tmp_path / deb.filename).write_bytes(data)
    assert fetch(deb, tmp_path) == tmp_path / deb.filename
    with pytest.raises(PackageUnavailable, match="demo 1.0"):
        fetch(Deb("demo", "1.0", "0" * 64, "pool/main/d/demo/demo_1.0_all.deb"), tmp_path / "other")
