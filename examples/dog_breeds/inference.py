"""inference.py as the dog-breed project writes it (SageMaker PyTorch inference toolkit functions).

JPEG/PNG bytes (ContentType image/jpeg), or JSON {"url": ...} (ContentType application/json) whose image
is fetched with urllib (file:// URLs work offline); the answer is the class scores as JSON.
"""

import io
import json
import logging
import os
import urllib.request

import torch
from net import Net
from PIL import Image
from torchvision import transforms

logger = logging.getLogger(__name__)

JPEG_CONTENT_TYPE = "image/jpeg"
JSON_CONTENT_TYPE = "application/json"


def model_fn(model_dir):
    with open(os.path.join(model_dir, "classes.json")) as f:
        classes = json.load(f)
    model = Net(num_classes=len(classes))
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), map_location="cpu"))
    model.eval()
    model.classes = classes
    return model


def input_fn(request_body, content_type=JPEG_CONTENT_TYPE):
    logger.info(f"Request content type: {content_type}")
    if content_type == JPEG_CONTENT_TYPE:
        return Image.open(io.BytesIO(request_body)).convert("RGB")
    if content_type == JSON_CONTENT_TYPE:
        request = json.loads(request_body)
        with urllib.request.urlopen(request["url"]) as response:
            return Image.open(io.BytesIO(response.read())).convert("RGB")
    raise Exception(f"Requested unsupported ContentType in content_type: {content_type}")


def predict_fn(input_object, model):
    transform = transforms.Compose(
        [transforms.Resize((32, 32)), transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
    )
    with torch.no_grad():
        return model(transform(input_object).unsqueeze(0)), model.classes


def output_fn(prediction, accept=JSON_CONTENT_TYPE):
    logits, classes = prediction
    if accept != JSON_CONTENT_TYPE:
        raise ValueError(f"Unsupported accept type: {accept}")
    return json.dumps({"classes": classes, "scores": logits[0].tolist()}), JSON_CONTENT_TYPE
