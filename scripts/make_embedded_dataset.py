"""Synthesise the small offline spoken banking-intent dataset in ``data/embedded``.

The project must train and test without network access, so it ships its own
tiny stand-in for ``PolyAI/minds14``: short caller utterances for the same 14
intents, spoken by many espeak-ng voices and written in exactly the Hub parquet
layout (one ``en-US`` config, one ``train`` split) so the same loading code
works for the real dataset and for this one.

Regenerate with::

    python scripts/make_embedded_dataset.py --seed 0 --out data/embedded

Output is byte-identical across reruns for a given seed and espeak-ng build:
espeak-ng itself is deterministic, all jitter/noise comes from seeded
generators, and the random Ogg stream serial numbers that libsndfile picks are
replaced by fixed ones.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import soundfile as sf
import soxr
import yaml

ESPEAK_RATE = 22050
TARGET_RATE = 8000
LANG = "en-US"

INTENTS: list[str] = [
    "abroad",
    "address",
    "app_error",
    "atm_limit",
    "balance",
    "business_loan",
    "card_issues",
    "cash_deposit",
    "direct_debit",
    "freeze",
    "high_value_payment",
    "joint_account",
    "latest_transactions",
    "pay_bill",
]

# Same label set and order as MInDS-14, so class ids mean the same thing.
LANG_IDS: list[str] = [
    "cs-CZ",
    "de-DE",
    "en-AU",
    "en-GB",
    "en-US",
    "es-ES",
    "fr-FR",
    "it-IT",
    "ko-KR",
    "nl-NL",
    "pl-PL",
    "pt-PT",
    "ru-RU",
    "zh-CN",
]

# Short things a caller might say to a bank, two per intent (about 1-2 s each).
# Calibration (tiny random-init wav2vec2, 2 s crops, ~4 min on 2 CPU cores) showed
# that few, short phrasings spoken by many voices are what makes accuracy on
# unseen voices reachable: 4 phrasings x 40 voices learned far more slowly than
# 2 phrasings x 80 voices at the same size and compute.
PHRASINGS: dict[str, list[str]] = {
    "abroad": [
        "I'm travelling abroad.",
        "Can I use my card overseas?",
    ],
    "address": [
        "I need to change my address.",
        "I've moved house.",
    ],
    "app_error": [
        "The app keeps crashing.",
        "Your app won't let me log in.",
    ],
    "atm_limit": [
        "What's my cash withdrawal limit?",
        "Can I raise my ATM limit?",
    ],
    "balance": [
        "What's my balance?",
        "How much money do I have?",
    ],
    "business_loan": [
        "I need a business loan.",
        "Can my company borrow money?",
    ],
    "card_issues": [
        "My card isn't working.",
        "My card was declined.",
    ],
    "cash_deposit": [
        "I want to deposit cash.",
        "How do I pay in cash?",
    ],
    "direct_debit": [
        "Set up a direct debit.",
        "Cancel my direct debit.",
    ],
    "freeze": [
        "Please freeze my account.",
        "Block my card, it's lost.",
    ],
    "high_value_payment": [
        "I need to make a large payment.",
        "How do I send a big amount?",
    ],
    "joint_account": [
        "Open a joint account.",
        "Add my wife to my account.",
    ],
    "latest_transactions": [
        "Show my recent transactions.",
        "What were my last payments?",
    ],
    "pay_bill": [
        "I want to pay a bill.",
        "Pay my electricity bill.",
    ],
}


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: a fixed espeak-ng voice, variant, pitch and speed."""

    base: str
    variant: str
    pitch: int  # espeak-ng -p, 0-99 (50 is the voice default)
    speed: int  # espeak-ng -s, words per minute

    @property
    def voice_id(self) -> str:
        """Speaker id used for the ``speaker`` column and the clip file names."""
        return f"{self.base}+{self.variant}"


# Only the built-in gmw English voices (no mbrola voices).
BASE_VOICES = [
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
]
MALE_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]
FEMALE_VARIANTS = ["f1", "f2", "f3", "f4", "f5"]
PITCHES = [35, 40, 45, 50, 55, 60, 65]  # natural range around espeak's default 50
SPEEDS = [145, 150, 155, 160, 165, 170, 175, 180]  # words per minute
SPEAKERS_PER_BASE = 10
PHRASINGS_PER_INTENT = 2  # more voices beat more phrasings for held-out speakers


def make_voices(per_base: int = SPEAKERS_PER_BASE) -> list[Voice]:
    """A fixed, seed-independent speaker table.

    Each base voice gets ``per_base`` speakers alternating male/female variants;
    base pitch and speed rotate through natural values so that speakers differ in
    accent, timbre, pitch and tempo.  Many distinct speakers matter more than
    many phrasings for accuracy on voices never heard in training.
    """
    voices = []
    for b, base in enumerate(BASE_VOICES):
        for j in range(per_base):
            pool = MALE_VARIANTS if j % 2 == 0 else FEMALE_VARIANTS
            variant = pool[(3 * b + j // 2) % len(pool)]
            pitch = PITCHES[(b + j) % len(PITCHES)]
            speed = SPEEDS[(2 * b + 3 * j) % len(SPEEDS)]
            voices.append(Voice(base, variant, pitch, speed))
    if len({v.voice_id for v in voices}) != len(voices):
        raise ValueError("speaker ids must be unique; lower per_base")
    return voices


VOICES: list[Voice] = make_voices()

SPEED_JITTER = 0.08  # +-8 % words per minute per clip
PITCH_JITTER = 6  # +-6 espeak pitch units per clip
SNR_DB = 30.0  # white noise added to every clip
PEAK = 0.9  # peak level after normalisation
TRIM_THRESHOLD = 0.02  # of the clip peak, for leading/trailing silence
TRIM_MARGIN_S = 0.05  # silence kept either side after trimming
VORBIS_COMPRESSION = 0.8  # libsndfile compression_level, 0 (best) .. 1 (smallest)


def features() -> datasets.Features:
    """The MInDS-14 column schema plus a ``speaker`` column for speaker splits."""
    return datasets.Features(
        {
            "path": datasets.Value("string"),
            "audio": datasets.Audio(sampling_rate=TARGET_RATE, decode=False),
            "transcription": datasets.Value("string"),
            "english_transcription": datasets.Value("string"),
            "intent_class": datasets.ClassLabel(names=INTENTS),
            "lang_id": datasets.ClassLabel(names=LANG_IDS),
            "speaker": datasets.Value("string"),
        }
    )


def espeak_version() -> str:
    """The espeak-ng version line, recorded in the dataset card."""
    cmd = ["espeak-ng", "--version"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return out.split("Data at:")[0].strip()


def synthesise(text: str, voice: str, pitch: int, speed: int) -> np.ndarray:
    """Run espeak-ng and return its 22.05 kHz mono output as float32."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", text],
        capture_output=True,
        check=True,
    ).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    if rate != ESPEAK_RATE:
        raise RuntimeError(f"espeak-ng produced {rate} Hz, expected {ESPEAK_RATE}")
    return audio


def trim_silence(x: np.ndarray, rate: int) -> np.ndarray:
    """Drop espeak's leading/trailing silence so clips are mostly speech."""
    loud = np.flatnonzero(np.abs(x) > TRIM_THRESHOLD * np.abs(x).max())
    if loud.size == 0:
        return x
    margin = int(TRIM_MARGIN_S * rate)
    return x[max(loud[0] - margin, 0) : loud[-1] + margin + 1]


def render(text: str, voice: Voice, rng: np.random.Generator) -> np.ndarray:
    """Synthesise one clip with per-clip jitter, at 8 kHz, noisy and normalised."""
    speed = round(voice.speed * (1.0 + rng.uniform(-SPEED_JITTER, SPEED_JITTER)))
    pitch = int(np.clip(voice.pitch + rng.integers(-PITCH_JITTER, PITCH_JITTER + 1), 0, 99))
    x = trim_silence(synthesise(text, voice.voice_id, pitch, speed), ESPEAK_RATE)
    x = soxr.resample(x, ESPEAK_RATE, TARGET_RATE, quality="HQ")
    noise_rms = np.sqrt(np.mean(x**2)) * 10.0 ** (-SNR_DB / 20.0)
    x = x + rng.standard_normal(x.shape[0]) * noise_rms
    return (x * (PEAK / np.abs(x).max())).astype(np.float32)


def _ogg_crc_table() -> list[int]:
    """CRC-32 table for Ogg (polynomial 0x04C11DB7, not bit-reflected)."""
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC_TABLE = _ogg_crc_table()


def _ogg_crc(data: bytes) -> int:
    """Ogg page checksum of ``data``."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) & 0xFF) ^ byte]
    return crc


def fix_ogg_serial(ogg: bytes, serial: int) -> bytes:
    """Replace libsndfile's random stream serial so the bytes are reproducible."""
    out = bytearray(ogg)
    pos = 0
    while pos < len(out):
        if out[pos : pos + 4] != b"OggS":
            raise ValueError(f"no Ogg page at byte {pos}")
        n_segments = out[pos + 26]
        body = sum(out[pos + 27 : pos + 27 + n_segments])
        end = pos + 27 + n_segments + body
        out[pos + 14 : pos + 18] = serial.to_bytes(4, "little")
        out[pos + 22 : pos + 26] = b"\0\0\0\0"
        out[pos + 22 : pos + 26] = _ogg_crc(bytes(out[pos:end])).to_bytes(4, "little")
        pos = end
    return bytes(out)


def encode_ogg(x: np.ndarray, serial: int) -> bytes:
    """Encode 8 kHz mono audio as an Ogg/Vorbis file with a fixed serial."""
    buf = io.BytesIO()
    sf.write(
        buf, x, TARGET_RATE, format="OGG", subtype="VORBIS", compression_level=VORBIS_COMPRESSION
    )
    return fix_ogg_serial(buf.getvalue(), serial)


def build_rows(seed: int) -> dict[str, list]:
    """Render every speaker x intent x phrasing clip, in a fixed order."""
    rows: dict[str, list] = {name: [] for name in features()}
    for v_idx, voice in enumerate(VOICES):
        for i_idx, intent in enumerate(INTENTS):
            for k, text in enumerate(PHRASINGS[intent][:PHRASINGS_PER_INTENT]):
                rng = np.random.default_rng([seed, v_idx, i_idx, k])
                x = render(text, voice, rng)
                path = f"{LANG}~{intent.upper()}/{voice.voice_id}_{intent}_{k}.ogg"
                rows["path"].append(path)
                rows["audio"].append({"bytes": encode_ogg(x, len(rows["path"])), "path": path})
                rows["transcription"].append(text)
                rows["english_transcription"].append(text)
                rows["intent_class"].append(i_idx)
                rows["lang_id"].append(LANG_IDS.index(LANG))
                rows["speaker"].append(voice.voice_id)
    return rows


def build_dataset(rows: dict[str, list]) -> datasets.Dataset:
    """Build the dataset with the final features and their Hub metadata.

    ``Audio.encode_example`` insists on importing torchcodec even for ready-made
    ``{bytes, path}`` dicts, so the audio column is first built as its plain
    storage struct and then cast (a pure Arrow cast) to ``Audio(decode=False)``.
    """
    storage = features().copy()
    storage["audio"] = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    ds = datasets.Dataset.from_dict(rows, features=storage)
    ds = ds.cast_column("audio", features()["audio"])
    if ds.features != features():
        raise RuntimeError(f"unexpected features: {ds.features}")
    return ds


def write_parquet(ds: datasets.Dataset, path: Path) -> None:
    """Write one zstd-compressed parquet file that keeps the ``huggingface`` metadata.

    ``Dataset.to_parquet`` forces audio columns to be stored uncompressed; every
    clip repeats the ~2.6 kB Vorbis setup header, so zstd over the whole column
    roughly halves the file and keeps the embedded dataset small.
    """
    table = ds.data.table
    if b"huggingface" not in (table.schema.metadata or {}):
        raise RuntimeError("arrow table lost its datasets features metadata")
    pq.write_table(table, path, compression="zstd")


def dataset_info_yaml(num_examples: int, num_bytes: int, download_size: int) -> dict:
    """The ``dataset_info`` card block, written out explicitly (no private API)."""

    def class_label(names: list[str]) -> dict:
        return {"class_label": {"names": {str(i): n for i, n in enumerate(names)}}}

    return {
        "config_name": LANG,
        "features": [
            {"name": "path", "dtype": "string"},
            {"name": "audio", "dtype": {"audio": {"sampling_rate": TARGET_RATE, "decode": False}}},
            {"name": "transcription", "dtype": "string"},
            {"name": "english_transcription", "dtype": "string"},
            {"name": "intent_class", "dtype": class_label(INTENTS)},
            {"name": "lang_id", "dtype": class_label(LANG_IDS)},
            {"name": "speaker", "dtype": "string"},
        ],
        "splits": [{"name": "train", "num_bytes": num_bytes, "num_examples": num_examples}],
        "download_size": download_size,
        "dataset_size": num_bytes,
    }


def write_card(
    out: Path, seed: int, ds: datasets.Dataset, download_size: int, seconds: float
) -> None:
    """Write README.md: Hub YAML front matter plus how the data was made."""
    front = {
        "license": "cc-by-4.0",
        "language": ["en"],
        "task_categories": ["audio-classification"],
        "pretty_name": "Embedded synthetic MInDS-14 stand-in (en-US)",
        "configs": [
            {"config_name": LANG, "data_files": [{"split": "train", "path": f"{LANG}/train-*"}]}
        ],
        "dataset_info": dataset_info_yaml(len(ds), ds.data.nbytes, download_size),
    }
    voices = "\n".join(
        f"| `{v.voice_id}` | `{v.base}` | `+{v.variant}` | {v.pitch} | {v.speed} |" for v in VOICES
    )
    phrasings = "\n".join(
        f"- **{intent}**: " + "; ".join(f"“{p}”" for p in PHRASINGS[intent][:PHRASINGS_PER_INTENT])
        for intent in INTENTS
    )
    body = f"""
# Embedded synthetic spoken banking intents (MInDS-14 layout)

A small, fully synthetic, offline stand-in for
[`PolyAI/minds14`](https://huggingface.co/datasets/PolyAI/minds14) (config
`en-US`), so the project can be trained and tested without network access.
It has the same columns, the same `intent_class` and `lang_id` label sets (in
the same order) and the same Hub parquet layout, plus a `speaker` column so
that train/test splits can keep test voices out of training.

- {len(ds)} clips = {len(VOICES)} speakers x {len(INTENTS)} intents x
  {PHRASINGS_PER_INTENT} phrasings, {seconds / 60:.1f} minutes of audio in total.
- Audio: Ogg/Vorbis, mono, {TARGET_RATE} Hz (MInDS-14 is 8 kHz telephone audio
  too), stored as `{{bytes, path}}` with `Audio(decode=False)`.
- Every row has `lang_id` = `{LANG}`; `transcription` and
  `english_transcription` are the text that was spoken.

## How it was made

Generated by `scripts/make_embedded_dataset.py` with
**{espeak_version()}** and seed **{seed}**:

1. Each clip is spoken by `espeak-ng -v <base>+<variant> -p <pitch> -s <speed>
   --stdout`, where the speaker's base pitch and speed are jittered per clip
   (speed +-{SPEED_JITTER:.0%}, pitch +-{PITCH_JITTER} units; seeded).
2. Leading/trailing silence is trimmed (threshold {TRIM_THRESHOLD:.0%} of the
   peak, {TRIM_MARGIN_S * 1000:.0f} ms margin kept).
3. The 22 050 Hz output is resampled to {TARGET_RATE} Hz with soxr (HQ).
4. White noise at {SNR_DB:.0f} dB SNR is added (seeded), then the clip is
   peak-normalised to {PEAK}.
5. The clip is encoded as Ogg/Vorbis with libsndfile (compression level
   {VORBIS_COMPRESSION}); the random Ogg stream serial is replaced by the row
   number so reruns are byte-identical.
6. All rows go into one zstd-compressed parquet file whose schema metadata
   carries the `datasets` features (class label names included).

Random numbers come from `numpy.random.default_rng([seed, speaker, intent,
phrasing])`, so each clip is independent of generation order.

### Speakers

Only espeak-ng's built-in `gmw` English voices are used (no mbrola voices).
A speaker is a fixed voice + variant + base pitch + base speed:

| speaker | base voice | variant | pitch (-p) | speed (-s, wpm) |
|---|---|---|---|---|
{voices}

### Phrasings

{phrasings}

## Licence

The audio was produced by the espeak-ng speech synthesiser (GPL-3.0-or-later);
the synthesiser's licence does not extend to its output. The phrasings were
written for this project. The dataset is released under CC-BY-4.0. It contains
no recordings of real people. The intent names and label sets mirror MInDS-14
(CC-BY-4.0) so that models and code are interchangeable.

## Regenerate

```bash
python scripts/make_embedded_dataset.py --seed {seed} --out data/embedded
```

## Load

```python
import datasets

ds = datasets.load_dataset("data/embedded", "{LANG}", split="train")
```

Decode the `audio` bytes with `soundfile` (the column is stored undecoded).
"""
    text = "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n" + body
    (out / "README.md").write_text(text, encoding="utf-8")


def main() -> None:
    """Parse arguments, render the clips and write parquet + dataset card."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for per-clip jitter and noise")
    parser.add_argument("--out", type=Path, default=Path("data/embedded"), help="dataset directory")
    args = parser.parse_args()

    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed")
    rows = build_rows(args.seed)
    seconds = sum(sf.info(io.BytesIO(a["bytes"])).duration for a in rows["audio"])
    ds = build_dataset(rows)

    config_dir = args.out / LANG
    if config_dir.exists():
        shutil.rmtree(config_dir)
    config_dir.mkdir(parents=True)
    parquet = config_dir / "train-00000-of-00001.parquet"
    write_parquet(ds, parquet)
    write_card(args.out, args.seed, ds, parquet.stat().st_size, seconds)
    size_mb = parquet.stat().st_size / 1e6
    print(f"wrote {len(ds)} clips ({seconds:.0f} s of audio), {size_mb:.2f} MB -> {parquet}")


if __name__ == "__main__":
    main()
