"""A tiny Whisper model for faster-whisper, built here without a download (BUILD-NOTES: a
`WhisperForConditionalGeneration` from a `WhisperConfig`, converted with CTranslate2's
`TransformersConverter`, with a `tokenizer.json` in the model folder).

The real architecture and loading path, at toy size: 2 encoder and 2 decoder layers, 64 wide,
80 mel bins, an English-only vocabulary (a byte-level BPE trained on a few sentences, then
Whisper's special tokens by name, then the 1,501 timestamp tokens the converter appends), so
faster-whisper runs exactly as with `tiny.en`: mel features, encoder, timestamp rules, beam
search, temperature fallback, word alignment by cross-attention and DTW, optional VAD.

A random decoder would babble until faster-whisper's 448-token limit, through every temperature
fallback: too slow for a unit test, and its segments would be whatever the seed gives. So the
decoder's output is arranged to follow a short script by position: token embeddings and the
attention/MLP output projections are zero, the residual stream is the learned position
embedding alone, and `proj_out` maps position p's (layer-normed) embedding to the script's
token p. Everything the audio touches (encoder, attention queries and keys, hence the word
alignment) stays random. The script is "<|0.00|> Good evening officer <|1.00|><|1.00|> Why did
you stop me <|2.00|> <|endoftext|>": two segments whose word timings come from a real DTW over
the model's random cross-attention. Tests can rely on the shape (two segments, one word per
scripted word, monotonic times inside the clip) and on the text, never on the timings' values.

    model_dir = build_tiny_whisper(tmp_path / "tiny-whisper")
    WhisperModel(str(model_dir), device="cpu", compute_type="float32")
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SCRIPT", "build_tiny_whisper", "session_model"]

# (start, text, end) of each scripted segment; times on Whisper's 0.02 s grid, <= 2 s so a
# 2-3 s clip holds them
SCRIPT: tuple[tuple[float, str, float], ...] = ((0.0, " Good evening officer", 1.0),
                                                (1.0, " Why did you stop me", 2.0))
SPECIALS = ("<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>")
N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>
D_MODEL = 64
CORPUS = ["Good evening officer.", "Why did you stop me?", "License and registration, please.",
          "You were going fifty in a thirty.", "Step out of the car.", "I am not resisting.",
          "Okay, okay. Calm down, sir.", "What is this about? I did nothing wrong!"]


def build_tiny_whisper(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a CTranslate2 Whisper model folder (model.bin, config.json, vocabulary.json,
    tokenizer.json, preprocessor_config.json) to `out_dir` and return it. ~2 s after imports."""
    import json
    import tempfile

    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import PreTrainedTokenizerFast, WhisperConfig, WhisperForConditionalGeneration

    out = Path(out_dir)
    raw = _tokenizer()
    n_text = raw.get_vocab_size() - len(SPECIALS)
    ids = {t: raw.token_to_id(t) for t in SPECIALS}
    assert ids["<|endoftext|>"] == n_text and ids["<|notimestamps|>"] == n_text + 7
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    vocab_size = n_text + len(SPECIALS) + N_TIMESTAMPS

    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=80, d_model=D_MODEL, encoder_layers=2,
        decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=1500,
        max_target_positions=448, tie_word_embeddings=False, pad_token_id=eot,
        bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
        suppress_tokens=[], begin_suppress_tokens=[eot], forced_decoder_ids=None)
    model = WhisperForConditionalGeneration(config).eval()
    _script_decoder(model, _script_ids(raw, ids["<|notimestamps|>"] + 1, eot))

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>",
                                        bos_token="<|endoftext|>", unk_token="<|endoftext|>",
                                        pad_token="<|endoftext|>")
    with tempfile.TemporaryDirectory(prefix="tiny-whisper-hf-") as hf_dir:
        model.save_pretrained(hf_dir)
        raw.save(str(Path(hf_dir, "tokenizer.json")))
        Path(hf_dir, "preprocessor_config.json").write_text(json.dumps(
            {"feature_size": 80, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30,
             "n_fft": 400}), encoding="utf-8")

        class _Converter(TransformersConverter):
            def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
                return tokenizer  # ours, not AutoTokenizer's idea of a Whisper tokenizer

        _Converter(hf_dir, copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
            str(out), force=True)
    return out


def _tokenizer():
    """Byte-level BPE (every byte is a token, as faster-whisper's suppression lists assume)
    followed by Whisper's special tokens, `<|endoftext|>` first and `<|notimestamps|>` last:
    faster-whisper takes every id >= eot as special and notimestamps + 1 as the first
    timestamp."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # a space before each sentence, as Whisper sees text: " Good" is one token, not " " + "Good"
    tok.train_from_iterator([f" {t}" for t in CORPUS] * 4, trainer=trainer)
    tok.add_special_tokens(list(SPECIALS))
    return tok


def _script_ids(raw, timestamp_begin: int, eot: int) -> list[int]:
    """The token the decoder should produce after each prompt position (the prompt is the one
    token <|startoftranscript|>, English-only models have no language or task token)."""
    script: list[int] = []
    for k, (start, text, end) in enumerate(SCRIPT):
        if k == 0:
            script.append(timestamp_begin + round(start / 0.02))
        words = raw.encode(text, add_special_tokens=False).ids
        assert len(words) == len(text.split()), f"{text!r} is not one token per word"
        script += words
        script.append(timestamp_begin + round(end / 0.02))
        if k + 1 < len(SCRIPT):
            script.append(timestamp_begin + round(SCRIPT[k + 1][0] / 0.02))
    return [*script, eot]


def _script_decoder(model, script: list[int], margin: float = 16.0) -> None:
    """Make the decoder's logits at position p peak (by `margin`) at `script[p]` whatever the
    audio: the residual stream carries only the position embedding (zero-mean orthonormal
    directions, so the final LayerNorm keeps them orthogonal) and `proj_out` reads it."""
    import torch

    dec = model.model.decoder
    n = len(script)
    assert n < D_MODEL, "the script needs one direction per position"
    with torch.no_grad():
        basis = torch.randn(D_MODEL, n)
        basis -= basis.mean(dim=0, keepdim=True)  # zero mean: LayerNorm only rescales
        q, _ = torch.linalg.qr(basis)  # orthonormal columns, still zero-mean
        pos = dec.embed_positions.weight
        pos.zero_()
        pos[:n] = q.T
        pos[n:] = q.T[-1]  # past the script: stay on <|endoftext|>
        dec.embed_tokens.weight.zero_()
        for layer in dec.layers:
            for lin in (layer.self_attn.out_proj, layer.encoder_attn.out_proj, layer.fc2):
                lin.weight.zero_()
                if lin.bias is not None:
                    lin.bias.zero_()
        dec.layer_norm.weight.fill_(1.0)
        dec.layer_norm.bias.zero_()
        proj = model.proj_out.weight
        proj.zero_()
        scale = margin / D_MODEL ** 0.5  # LayerNorm makes a unit vector sqrt(d) long
        for p, token in enumerate(script):
            proj[token] += scale * q[:, p]


_SESSION: dict[str, Path] = {}


def session_model(tmp_path_factory) -> Path:
    """The tiny model for this test session, built on first use (pass pytest's
    `tmp_path_factory`; wrap in a session-scoped fixture)."""
    if "dir" not in _SESSION:
        _SESSION["dir"] = build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper") / "model")
    return _SESSION["dir"]
