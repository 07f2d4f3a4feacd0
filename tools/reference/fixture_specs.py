"""Specs of the `test/fixtures/parity-*` folders built by make_fixture.py.

A spec is plain data (it can also be given as a JSON file to make_fixture.py --spec-file):

  name            folder name under test/fixtures/
  seed            seed of the weights, the synthetic media and the random logit ids
  layout          "4.57" (released config.json: text rope_scaling + rope_theta, vision model_type "qwen3_vl")
                  or "5.x" (transformers 5.x save_pretrained spelling: rope_parameters, "qwen3_vl_vision")
  about           one line for the folder README
  text, vision    model sizes (keys as in config.json; rope: theta, mrope_section, optional yarn
                  {factor, original_max_position_embeddings})
  preprocessor    overrides of preprocessor_config.json "size" (shortest_edge / longest_edge)
  video_preprocessor  the same for video_preprocessor_config.json
  cases           list of {name, about, content: [...], max_new_tokens}; content parts are
                  {"text": str}, {"image": {"file", "wh", "style"}} or
                  {"video": {"prefix", "frames", "wh", "fps"}}
"""

# Vision tower of the released 2B..32B: patch 16, temporal patch 2, merge 2. Sizes here are tiny.

SPECS = {
    # untied lm_head, GQA 4 (8 query heads on 2 KV heads), head_dim 8 with mrope [2,1,1],
    # one DeepStack tap ([1]) on a 3-layer decoder, vision heads 4, 8x8 learned position grid,
    # a 33x900 image, a clip whose sampled frame count is odd (8 frames at 3 fps -> 5 sampled)
    "parity-untied-gqa4": {
        "seed": 4101,
        "layout": "4.57",
        "about": "untied lm_head, GQA 4, head_dim 8, attention biases, one DeepStack tap, vision heads 4, 8x8 position grid, tall image, odd frame count at 3 fps",
        "text": {
            "hidden_size": 32, "intermediate_size": 80, "num_hidden_layers": 3,
            "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 8,
            "tie_word_embeddings": False, "attention_bias": True,
            "rope": {"theta": 5000000, "mrope_section": [2, 1, 1]},
        },
        "vision": {
            "depth": 3, "hidden_size": 32, "intermediate_size": 72, "num_heads": 4,
            "num_position_embeddings": 64, "deepstack_visual_indexes": [1],
        },
        "preprocessor": {"shortest_edge": 4096},
        "cases": [
            {"name": "a_text", "about": "short text-only chat prompt", "max_new_tokens": 8,
             "content": [{"text": "Name three colours of the rainbow, then stop."}]},
            {"name": "b_image_tall", "about": "one 33x900 (WxH) image: aspect ratio 27, width rounds down to one merge block",
             "max_new_tokens": 6,
             "content": [{"image": {"file": "image_tall.png", "wh": [33, 900], "style": "bands"}},
                         {"text": "What is in this strip?"}]},
            {"name": "c_video_fps3", "about": "8 frames at 3 fps: 5 frames sampled (linspace rounds 3.5 to 4), the last one repeated to fill the temporal pair",
             "max_new_tokens": 6,
             "content": [{"video": {"prefix": "clip3", "frames": 8, "wh": [100, 50], "fps": 3.0}},
                         {"text": "Describe the motion."}]},
        ],
    },
    # transformers 5.x config spelling; GQA 1, head_dim 32 with mrope [6,5,5], DeepStack taps
    # [0, 1] on a 4-layer decoder, vision heads 1 (head dim 40), 10x10 position grid; two images
    # of odd sizes and a 29.97 fps clip in one prompt (5 sampled frames, frames 30 px high)
    "parity-mixed-v5": {
        "seed": 4202,
        "layout": "5.x",
        "about": "transformers-5.x config spelling, GQA 1, head_dim 32, DeepStack [0, 1] on 4 layers, vision heads 1, 10x10 position grid, two images and a 29.97 fps video in one prompt",
        "text": {
            "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 4,
            "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 32,
            "tie_word_embeddings": True,
            "rope": {"theta": 10000, "mrope_section": [6, 5, 5]},
        },
        "vision": {
            "depth": 3, "hidden_size": 40, "intermediate_size": 56, "num_heads": 1,
            "num_position_embeddings": 100, "deepstack_visual_indexes": [0, 1],
        },
        "preprocessor": {"shortest_edge": 8192},
        "cases": [
            {"name": "a_two_images_video", "about": "75x49 image (min-pixels upscale), 203x117 image, 75-frame clip at 29.97 fps (5 frames sampled, 18.5 -> 18 and 55.5 -> 56; 150x30 frames upscaled to 32 px high first)",
             "max_new_tokens": 6,
             "content": [{"text": "Compare"},
                         {"image": {"file": "image_small.png", "wh": [75, 49], "style": "blobs"}},
                         {"text": "with"},
                         {"image": {"file": "image_mid.png", "wh": [203, 117], "style": "noise"}},
                         {"text": "and the clip"},
                         {"video": {"prefix": "clip2997", "frames": 75, "wh": [150, 30], "fps": 29.97}},
                         {"text": "briefly."}]},
            {"name": "b_text", "about": "short text-only chat prompt", "max_new_tokens": 8,
             "content": [{"text": "Write one sentence about rivers."}]},
        ],
    },
    # YaRN text rope in the released (4.57) spelling: rope_scaling {rope_type yarn, factor 3,
    # original_max_position_embeddings 4096} with max_position_embeddings 12288; GQA 3, head_dim 24
    # with mrope [4,4,4]; a DeepStack tap on the last vision block; max_pixels lowered so a
    # 517x311 image is downscaled
    "parity-yarn": {
        "seed": 4303,
        "layout": "4.57",
        "about": "YaRN text rope (factor 3) in the released config spelling, GQA 3, head_dim 24, DeepStack tap on the last vision block, 7x7 position grid, max-pixels downscale of a 517x311 image",
        "text": {
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
            "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 24,
            "tie_word_embeddings": True,
            "max_position_embeddings": 12288,
            "rope": {"theta": 1000000, "mrope_section": [4, 4, 4],
                     "yarn": {"factor": 3.0, "original_max_position_embeddings": 4096}},
        },
        "vision": {
            "depth": 3, "hidden_size": 32, "intermediate_size": 48, "num_heads": 2,
            "num_position_embeddings": 49, "deepstack_visual_indexes": [2],
        },
        "preprocessor": {"shortest_edge": 4096, "longest_edge": 50000},
        "cases": [
            {"name": "a_long_text", "about": "a ~150-token text-only prompt", "max_new_tokens": 6,
             "content": [{"text": "LONG_TEXT"}]},
            {"name": "b_image_downscale", "about": "517x311 image: 512x320 exceeds the lowered max_pixels (50000), so smart_resize scales it to 288x160",
             "max_new_tokens": 6,
             "content": [{"image": {"file": "image_517x311.png", "wh": [517, 311], "style": "blobs"}},
                         {"text": "Read the picture."}]},
        ],
    },
    # YaRN in the transformers 5.x spelling (rope_parameters), MQA (4 query heads on 1 KV head),
    # head_dim 12 with mrope [2,2,2], 5 decoder layers with DeepStack taps [1, 3, 4] from a 5-block
    # tower, vision heads 4, 12x12 position grid; a video (12 frames at 2.5 fps -> 9 sampled) BEFORE an
    # image whose smart_resize lands exactly on min_pixels
    "parity-deep-yarn-v5": {
        "seed": 4404,
        "layout": "5.x",
        "about": "YaRN in the 5.x spelling, MQA, head_dim 12, DeepStack [3, 1, 4] (unsorted: features follow block order) on 5 layers, vision heads 4, 12x12 position grid, video before image, 9 sampled frames at 2.5 fps",
        "text": {
            "hidden_size": 32, "intermediate_size": 72, "num_hidden_layers": 5,
            "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 12,
            "tie_word_embeddings": True,
            "max_position_embeddings": 24576,
            "rope": {"theta": 1000000, "mrope_section": [2, 2, 2],
                     "yarn": {"factor": 3.0, "original_max_position_embeddings": 8192}},
        },
        "vision": {
            "depth": 5, "hidden_size": 32, "intermediate_size": 40, "num_heads": 4,
            "num_position_embeddings": 144, "deepstack_visual_indexes": [3, 1, 4],
        },
        "preprocessor": {"shortest_edge": 4096},
        "cases": [
            {"name": "a_video_then_image", "about": "12-frame clip at 2.5 fps (9 frames sampled, 5.5 -> 6; padded to 10) followed by a 130x47 image that smart_resize maps to exactly 4096 pixels (128x32)",
             "max_new_tokens": 6,
             "content": [{"video": {"prefix": "clip25", "frames": 12, "wh": [64, 64], "fps": 2.5}},
                         {"text": "Then this picture:"},
                         {"image": {"file": "image_130x47.png", "wh": [130, 47], "style": "bands"}},
                         {"text": "What changed?"}]},
            {"name": "b_text", "about": "short text-only chat prompt", "max_new_tokens": 8,
             "content": [{"text": "Count from one to five in French."}]},
        ],
    },
}

# Deterministic ~150-token filler for long-text cases (mixed scripts and digits).
LONG_TEXT = (
    "Summarise the following notes in two lines. Notes: the harbour opened at 06:45; 17 boats left before "
    "noon, 3 returned early because of fog. Café owners reported 212 customers (up 8% on Tuesday). "
    "Überall war es ruhig. 港口的天气很好，风不大。 The ferry schedule changes on 2026-03-14: departures at "
    "07:10, 09:40, 12:15 and 18:05. Tickets cost 4.50 EUR for adults, 2.25 EUR for children, free for bikes. "
    "Remember: the lighthouse is closed for repairs until further notice, and the north pier is slippery."
)
