"""What each Nova Sonic model supports (from AWS documentation; Regions are not verified live)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NovaModel:
    model_id: str
    voices: frozenset[str]
    regions: frozenset[str]
    # Nova 2 only: typed USER text during a voice session (also lets the model speak first),
    # and the turn-detection (endpointing) setting on sessionStart.
    interactive_text: bool
    turn_detection: bool
    # Nova 2 only: a SYSTEM_SPEECH text content after the system prompt (how to speak, apart
    # from what to say: its system-prompts page).
    speech_prompt: bool = False
    # The end-of-life date on the model's Bedrock model card (requests fail after it) and the
    # model that replaces it; None while the model is offered.
    end_of_life: str | None = None
    replacement: str | None = None


NOVA_2_SONIC = NovaModel(
    model_id="amazon.nova-2-sonic-v1:0",
    voices=frozenset(
        (
            "matthew",
            "tiffany",
            "amy",
            "olivia",
            "lupe",
            "carlos",
            "ambre",
            "florian",
            "lennart",
            "beatrice",
            "lorenzo",
            "tina",
            "carolina",
            "leo",
            "kiara",
            "arjun",
        )
    ),
    regions=frozenset({"us-east-1", "us-west-2", "ap-northeast-1"}),
    interactive_text=True,
    turn_detection=True,
    speech_prompt=True,
)

NOVA_SONIC_V1 = NovaModel(
    model_id="amazon.nova-sonic-v1:0",
    voices=frozenset(
        (
            "matthew",
            "tiffany",
            "amy",
            "lupe",
            "carlos",
            "ambre",
            "florian",
            "greta",
            "lennart",
            "beatrice",
            "lorenzo",
        )
    ),
    regions=frozenset({"us-east-1", "eu-north-1", "ap-northeast-1"}),
    interactive_text=False,
    turn_detection=False,
    end_of_life="14 September 2026",
    replacement="amazon.nova-2-sonic-v1:0",
)


def retired_message(model: NovaModel, override: str) -> str:
    """Why a retired model is refused, and how to go on (``override`` names the setting)."""
    return (
        f"{model.model_id} reached its end of life on {model.end_of_life} (its Bedrock model "
        f"card); requests to it fail after that date. Use {model.replacement}, or set "
        f"{override} where your Region or account still serves it."
    )


MODELS: dict[str, NovaModel] = {m.model_id: m for m in (NOVA_2_SONIC, NOVA_SONIC_V1)}

INPUT_SAMPLE_RATE = 16000  # the default, and what AWS's samples use
# Both input-event pages (v1 and Nova 2) list all three: telephony audio goes in unresampled.
INPUT_SAMPLE_RATES = frozenset({8000, 16000, 24000})
# Audio events carry at most this much: AWS's guidance is small real-time frames (~32 ms), and
# one large send_audio must not become second-long events.
MAX_AUDIO_EVENT_SECONDS = 0.1
OUTPUT_SAMPLE_RATES = frozenset({8000, 16000, 24000})
ENDPOINTING_SENSITIVITIES = ("HIGH", "MEDIUM", "LOW")
