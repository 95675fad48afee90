"""Twilio's text-to-speech voices and languages: which exist, which fit together, how much fits.

The names come from `ivr/data/twilio_voices.json`, generated once from the `SayVoice` and
`SayLanguage` enums of the TwiML allowlist (twilio-node 6.3.1's typings); regenerate it
when Twilio adds voices:

    python -m ivr.prompts.voices tests/data/twiml-allowlist.json

Stdlib only, so that both the prompt checker and the settings loader may use it.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

DATA_FILE = "twilio_voices.json"

# Twilio's limits on the text of one <Say>, by engine (error 13521, "<Say> element character
# limits exceeded"), in "UTF-8 single byte characters". A phrase is held to the strictest, so
# that a voice override or a change of voice can never push a checked phrase over; and bytes
# are counted, so a Cyrillic letter counts twice, the reading under which nothing is cut off.
SAY_LIMITS_BYTES = {"basic": 4096, "Polly": 3000, "Google": 5000}
SAY_LIMIT_BYTES = min(SAY_LIMITS_BYTES.values())

# Google's voice names carry their language: Google.ru-RU-Wavenet-A speaks ru-RU.
_GOOGLE = re.compile(r"^Google\.([A-Za-z]{2,3}-[A-Za-z]{2})-")
_POLLY_STYLE = re.compile(r"-(Neural|Generative)$")

# Amazon Polly's names do not, so here is a table (Amazon's list of Polly voices). A Polly
# voice missing here is accepted in any language rather than refused on a guess.
POLLY_LANGUAGES: dict[str, tuple[str, ...]] = {
    "Tatyana": ("ru-RU",), "Maxim": ("ru-RU",),
    "Joanna": ("en-US",), "Joey": ("en-US",), "Justin": ("en-US",), "Kendra": ("en-US",),
    "Kevin": ("en-US",), "Kimberly": ("en-US",), "Matthew": ("en-US",), "Salli": ("en-US",),
    "Ivy": ("en-US",), "Danielle": ("en-US",), "Gregory": ("en-US",), "Ruth": ("en-US",),
    "Stephen": ("en-US",),
    "Amy": ("en-GB",), "Brian": ("en-GB",), "Emma": ("en-GB",), "Arthur": ("en-GB",),
    "Nicole": ("en-AU",), "Russell": ("en-AU",), "Olivia": ("en-AU",),
    "Aditi": ("en-IN", "hi-IN"), "Raveena": ("en-IN",), "Kajal": ("en-IN", "hi-IN"),
    "Geraint": ("en-GB-WLS",), "Gwyneth": ("cy-GB",), "Niamh": ("en-IE",),
    "Aria": ("en-NZ",), "Ayanda": ("en-ZA",),
    "Hans": ("de-DE",), "Marlene": ("de-DE",), "Vicki": ("de-DE",), "Daniel": ("de-DE",),
    "Hannah": ("de-AT",),
    "Celine": ("fr-FR",), "Lea": ("fr-FR",), "Mathieu": ("fr-FR",), "Remi": ("fr-FR",),
    "Chantal": ("fr-CA",), "Gabrielle": ("fr-CA",), "Liam": ("fr-CA",), "Isabelle": ("fr-BE",),
    "Conchita": ("es-ES",), "Enrique": ("es-ES",), "Lucia": ("es-ES",), "Sergio": ("es-ES",),
    "Mia": ("es-MX",), "Andres": ("es-MX",),
    "Lupe": ("es-US",), "Miguel": ("es-US",), "Penelope": ("es-US",), "Pedro": ("es-US",),
    "Carla": ("it-IT",), "Giorgio": ("it-IT",), "Bianca": ("it-IT",), "Adriano": ("it-IT",),
    "Camila": ("pt-BR",), "Ricardo": ("pt-BR",), "Vitoria": ("pt-BR",), "Thiago": ("pt-BR",),
    "Ines": ("pt-PT",), "Cristiano": ("pt-PT",),
    "Mizuki": ("ja-JP",), "Takumi": ("ja-JP",), "Kazuha": ("ja-JP",), "Tomoko": ("ja-JP",),
    "Seoyeon": ("ko-KR",), "Zhiyu": ("cmn-CN",), "Hiujin": ("yue-HK",),
    "Zeina": ("arb",), "Hala": ("ar-AE",), "Zayd": ("ar-AE",),
    "Astrid": ("sv-SE",), "Elin": ("sv-SE",), "Liv": ("nb-NO",), "Ida": ("nb-NO",),
    "Naja": ("da-DK",), "Mads": ("da-DK",), "Sofie": ("da-DK",),
    "Lotte": ("nl-NL",), "Ruben": ("nl-NL",), "Laura": ("nl-NL",), "Lisa": ("nl-BE",),
    "Ewa": ("pl-PL",), "Jacek": ("pl-PL",), "Jan": ("pl-PL",), "Maja": ("pl-PL",),
    "Ola": ("pl-PL",),
    "Carmen": ("ro-RO",), "Filiz": ("tr-TR",), "Burcu": ("tr-TR",),
    "Dora": ("is-IS",), "Karl": ("is-IS",), "Suvi": ("fi-FI",), "Arlet": ("ca-ES",),
}  # fmt: skip


@dataclass(frozen=True)
class Catalogue:
    """The voices and languages Twilio's `<Say>` accepts."""

    voices: frozenset[str]
    languages: frozenset[str]


@cache
def catalogue() -> Catalogue:
    """Read the packaged list of Twilio's voices and languages."""
    text = resources.files("ivr").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    return Catalogue(frozenset(data["voices"]), frozenset(data["languages"]))


def is_voice(voice: str) -> bool:
    """Tell whether Twilio knows the voice (names are case-sensitive, as in TwiML)."""
    return voice in catalogue().voices


def is_language(language: str) -> bool:
    """Tell whether Twilio's `<Say>` accepts the language tag."""
    return language in catalogue().languages


def voice_languages(voice: str) -> tuple[str, ...] | None:
    """Return the languages a voice speaks, or None when its name does not tell."""
    google = _GOOGLE.match(voice)
    if google:
        return (google.group(1),)
    engine, _, name = voice.partition(".")
    if engine == "Polly":
        # Accents are dropped because Generative names are spelt "Rémi", "Mía".
        base = _POLLY_STYLE.sub("", name).replace("é", "e").replace("í", "i")
        return POLLY_LANGUAGES.get(base)
    return None


def fits(voice: str, language: str) -> bool:
    """Tell whether a voice can speak a language, as far as its name tells."""
    spoken = voice_languages(voice)
    return spoken is None or language.lower() in {tag.lower() for tag in spoken}


def generate(allowlist: Path, out: Path) -> Catalogue:
    """Write the packaged voice list from the TwiML allowlist's `SayVoice`/`SayLanguage`."""
    enums = json.loads(allowlist.read_text(encoding="utf-8"))["enums"]
    data = {
        "source": "SayVoice and SayLanguage of twiml-allowlist.json (twilio-node 6.3.1 typings)",
        "voices": sorted(enums["SayVoice"]),
        "languages": sorted(enums["SayLanguage"]),
    }
    out.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return Catalogue(frozenset(data["voices"]), frozenset(data["languages"]))


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the packaged voice list: python -m ivr.prompts.voices ALLOWLIST.json."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m ivr.prompts.voices twiml-allowlist.json", file=sys.stderr)
        return 2
    out = Path(__file__).resolve().parent.parent / "data" / DATA_FILE  # ivr/data
    made = generate(Path(args[0]), out)
    print(f"{out}: {len(made.voices)} voices, {len(made.languages)} languages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
