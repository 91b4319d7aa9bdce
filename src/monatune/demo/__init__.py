"""The offline main job: fine-tune the embedded pretrained Swin with Mona and the baselines, and report."""

# Demo name -> the module holding its ``DEMO`` task. Kept free of imports: the CLI parser reads it,
# and each method's own process looks its task up here by name.
DEMO_TASKS = {
    "classification": "monatune.demo.classification",
    "detection": "monatune.demo.detection",
    "segmentation": "monatune.demo.segmentation",
    "oriented": "monatune.demo.oriented",
}
