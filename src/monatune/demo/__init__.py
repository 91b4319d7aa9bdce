"""The offline main job: fine-tune the embedded pretrained Swin with Mona and the baselines, and report."""
