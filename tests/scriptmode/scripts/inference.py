"""Endpoint script shaped like the dog-breed project's inference.py (SageMaker PyTorch inference toolkit)."""

import io
import json
import logging
import os

import torch
from net import Net
from PIL import Image
from torchvision import transforms

logger = logging.getLogger(__name__)

JPEG_CONTENT_TYPE = "image/jpeg"
JSON_CONTENT_TYPE = "application/json"


def model_fn(model_dir):
    state = torch.load(os.path.join(model_dir, "model.pth"), map_location="cpu")
    model = Net(num_classes=state["fc.weight"].shape[0])
    model.load_state_dict(state)
    model.eval()
    with open(os.path.join(model_dir, "classes.json")) as f:
        model.classes = json.load(f)
    return model


def input_fn(request_body, content_type=JPEG_CONTENT_TYPE):
    logger.info("Deserializing the input data.")
    if content_type == JPEG_CONTENT_TYPE:
        return Image.open(io.BytesIO(request_body)).convert("RGB")
    if content_type == JSON_CONTENT_TYPE:
        request = json.loads(request_body)
        return Image.new("RGB", (32, 32), tuple(request["color"]))
    raise Exception(f"Requested unsupported ContentType in content_type: {content_type}")


def predict_fn(input_object, model):
    transform = transforms.Compose(
        [transforms.Resize((32, 32)), transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
    )
    with torch.no_grad():
        return model(transform(input_object).unsqueeze(0)), model.classes


def output_fn(prediction, accept=JSON_CONTENT_TYPE):
    logits, classes = prediction
    probabilities = torch.softmax(logits, dim=1)[0]
    best = int(probabilities.argmax())
    body = {"label": classes[best], "probabilities": probabilities.tolist()}
    return json.dumps(body), JSON_CONTENT_TYPE
