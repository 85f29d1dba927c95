// The voices of each Nova Sonic model, as novakit.s2s.nova.models lists them (a browser test
// checks that the two tables agree). The page shows the voices of the model its session runs;
// before the first session it assumes the bridge's default model.

export const DEFAULT_MODEL = "amazon.nova-2-sonic-v1:0";

export const MODEL_VOICES = {
  "amazon.nova-2-sonic-v1:0": [
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
  ],
  "amazon.nova-sonic-v1:0": [
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
  ],
};

// The voices of `model`; for a model this page does not know, null (keep what is shown).
export function voicesOf(model) {
  return MODEL_VOICES[model] ?? null;
}
