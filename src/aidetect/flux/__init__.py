"""The FLUX dataset pipeline: generate FAKE images, collect REAL photos, build the split layout."""
