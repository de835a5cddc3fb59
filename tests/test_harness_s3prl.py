"""s3prl (hear_maeast.adapters.s3prl): `s3prl.nn.Featurizer` takes our upstream on real speech, and s3prl's own
MAE-AST upstream (the authors' code, `s3prl/upstream/mae_ast`) gives the same hidden states as ours, layer by layer,
on a checkpoint in the authors' fairseq layout: an independent check of our MAE-AST against a third party's loader."""

from __future__ import annotations

import pytest
import torch

from test_official import mae_ast_checkpoint

pytest.importorskip("s3prl", reason="s3prl is not installed: pip install '.[s3prl]' -c constraints.txt")

from hear_maeast.adapters.s3prl import MaeastUpstream, featurizer as s3prl_featurizer  # noqa: E402
from hear_maeast.errors import BadInput  # noqa: E402


@pytest.fixture(scope="module")
def words(speech_wavs) -> list[torch.Tensor]:
    """Real spoken words, 16 kHz: 3.0 s and 1.7 s of them."""
    from hear_maeast.audio import load_audio

    speech = torch.cat([load_audio(p) for p in speech_wavs[:4]])
    return [speech[:48000], speech[16000:43200]]


def test_featurizer_weighs_every_layer_of_our_upstream_on_real_speech(micro_checkpoints, words):
    upstream = MaeastUpstream(str(micro_checkpoints["mae-ast-frame-micro"]))
    wavs = torch.nn.utils.rnn.pad_sequence(words, batch_first=True)  # [2, 48000]
    lens = torch.tensor([len(w) for w in words])
    all_hs, all_lens = upstream(wavs, lens)
    assert len(all_hs) == upstream.num_layers == 2 and upstream.downsample_rates == [320, 320]  # 128x2: 20 ms
    assert all_lens[0].tolist() == [(1 + (n - 400) // 160) // 2 for n in lens.tolist()]  # whole tokens: 149, 84
    featurizer = s3prl_featurizer(upstream)  # s3prl.nn.Featurizer
    assert type(featurizer).__module__ == "s3prl.nn.upstream"
    hs, hs_len = featurizer(all_hs, all_lens)
    assert hs.shape == (2, 149, upstream.hidden_sizes[0]) and torch.equal(hs_len, all_lens[0])
    alone, _ = upstream(words[1][None], lens[1:])  # padding in the batch does not leak into a clip's frames
    assert torch.allclose(all_hs[1][1, :84], alone[1][0], atol=1e-5)
    assert torch.isfinite(hs).all() and hs[1, 84:].abs().max() < 1e-6  # softmax-weighted zeros past the clip


@pytest.mark.parametrize("kind", ["patch", "frame"])
def test_s3prl_mae_ast_upstream_and_ours_agree_layer_by_layer(kind, words, tmp_path, monkeypatch):
    from s3prl.upstream.mae_ast.expert import UpstreamExpert

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # s3prl torch.loads the pickled fairseq config
    path = tmp_path / f"mae_ast_{kind}.pt"
    torch.save(mae_ast_checkpoint(kind, depth=3), path)
    theirs = UpstreamExpert(str(path)).eval()
    ours = MaeastUpstream(str(path), trust_pickle=True)
    assert theirs.get_downsample_rates("hidden_states") == ours.downsample_rates[0]
    with torch.no_grad():
        reference = theirs([words[0]])["hidden_states"]  # 3 x [1, T, Fg*D]
    hidden, _ = ours(words[0][None], torch.tensor([len(words[0])]))
    assert len(hidden) == len(reference) == 3
    for layer, (a, b) in enumerate(zip(hidden, reference), 1):
        assert a.shape == b.shape, layer
        assert float((a - b).abs().max() / b.abs().max()) < 1e-4, layer


def test_upstream_refuses_another_rate_and_files_that_are_not_ours(micro_checkpoints, tmp_path):
    with pytest.raises(BadInput, match="s3prl: audio at 8000 Hz, but this adapter declared 16000 Hz"):
        MaeastUpstream(str(micro_checkpoints["msm-mae-micro"]), sample_rate=8000)
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(BadInput, match="not a checkpoint hear_maeast can read"):
        MaeastUpstream(str(tmp_path / "notes.pt"))
