# %% [markdown]
# # Dog breed classification: the SageMaker project notebook, run on this machine by Vizsla
#
# Written like the project's `train_and_deploy.ipynb` (cells as `# %%` blocks). Only the imports differ
# from the SageMaker version: `from vizsla import sagemaker` for `import sagemaker`, and `vizsla.sagemaker.*`
# for `sagemaker.*`. Run it top to bottom with `python examples/notebook_dog_breeds.py`, or open it in Jupyter
# (`jupytext --to notebook examples/notebook_dog_breeds.py` makes the .ipynb): about a minute on 2 CPU cores.
# The dog photos are replaced by a small generated dataset (`vizsla datasets create digits`), so the "breeds"
# are the digits 0-9; the code that trains, tunes, deploys and queries is the project's.
# Jobs and tuning jobs land in ./runs, like SageMaker's console lists them (`vizsla jobs list runs`).

# %%
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from vizsla import sagemaker
from vizsla.sagemaker.debugger import TensorBoardOutputConfig
from vizsla.sagemaker.predictor import Predictor
from vizsla.sagemaker.pytorch import PyTorch, PyTorchModel
from vizsla.sagemaker.tuner import CategoricalParameter, ContinuousParameter, HyperparameterTuner

# %%
sagemaker_session = sagemaker.Session()
bucket = sagemaker_session.default_bucket()
role = sagemaker.get_execution_role()
print(f"Default bucket: {bucket}\nRole: {role}")
# the training and inference scripts: the "dog_breeds" folder next to the notebook (a Jupyter kernel starts in
# the notebook's folder; `python examples/notebook_dog_breeds.py` finds it next to the file)
here = Path(".") if Path("dog_breeds").is_dir() else Path(__file__).resolve().parent
source_dir = str(here / "dog_breeds")

# %% [markdown]
# ## Dataset
# The project downloads dogImages.zip and uploads it to S3; here a small image folder is generated once.

# %%
if not Path("dogImages/train").is_dir():
    subprocess.run([sys.executable, "-m", "vizsla", "datasets", "create", "digits", "dogImages"], check=True)
inputs = sagemaker_session.upload_data(path="dogImages", bucket=bucket, key_prefix="dogImages")
channels = {"training": f"{inputs}/train", "test": f"{inputs}/test"}
print(channels)

# %% [markdown]
# ## Hyperparameter tuning

# %%
hyperparameter_ranges = {
    "lr": ContinuousParameter(0.001, 0.1),
    "batch-size": CategoricalParameter([32, 64]),
}
objective_metric_name = "average test loss"
objective_type = "Minimize"
metric_definitions = [{"Name": "average test loss", "Regex": "Test set: Average loss: ([0-9\\.]+)"}]

# %%
estimator = PyTorch(
    entry_point="hpo.py",
    source_dir=source_dir,
    base_job_name="pytorch_dog_hpo",
    role=role,
    framework_version="1.8",
    instance_count=1,
    instance_type="ml.m5.xlarge",
    py_version="py36",
    hyperparameters={"epochs": 1},
)

tuner = HyperparameterTuner(
    estimator,
    objective_metric_name,
    hyperparameter_ranges,
    metric_definitions,
    max_jobs=2,
    max_parallel_jobs=2,
    objective_type=objective_type,
)

# %%
tuner.fit(channels, wait=False)
tuner.wait()

# %%
best_estimator = tuner.best_estimator()
print(best_estimator.hyperparameters())
best_hyperparameters = {
    "batch-size": int(best_estimator.hyperparameters()["batch-size"].replace('"', "")),
    "lr": best_estimator.hyperparameters()["lr"],
    "epochs": 2,
}
print(best_hyperparameters)
print(tuner.analytics().dataframe())

# %% [markdown]
# ## Model training with the best hyperparameters

# %%
estimator = PyTorch(
    entry_point="hpo.py",
    source_dir=source_dir,
    base_job_name="dog-pytorch",
    role=role,
    instance_count=1,
    instance_type="ml.m5.xlarge",
    framework_version="1.8",
    py_version="py36",
    hyperparameters=best_hyperparameters,
    metric_definitions=metric_definitions,
    tensorboard_output_config=TensorBoardOutputConfig(s3_output_path=f"s3://{bucket}/tensorboard"),
)
estimator.fit(channels, wait=True)

# %%
training_job_name = estimator.latest_training_job.name
description = estimator.sagemaker_session.describe_training_job(training_job_name)
print(f"Training job {description['TrainingJobName']}: {description['TrainingJobStatus']}")
print(f"Model artifacts: {description['ModelArtifacts']['S3ModelArtifacts']}")
print(f"Final metrics: {description['FinalMetricDataList']}")

# %%
attached = PyTorch.attach(training_job_name)
print(f"Attached {attached.latest_training_job.name}, hyperparameters {attached.hyperparameters()}")

# %% [markdown]
# ## Model deploying and querying

# %%
jpeg_serializer = sagemaker.serializers.IdentitySerializer("image/jpeg")
json_deserializer = sagemaker.deserializers.JSONDeserializer()


class ImagePredictor(Predictor):
    def __init__(self, endpoint_name, sagemaker_session):
        super().__init__(
            endpoint_name,
            sagemaker_session=sagemaker_session,
            serializer=jpeg_serializer,
            deserializer=json_deserializer,
        )


pytorch_model = PyTorchModel(
    model_data=estimator.model_data,
    role=role,
    entry_point="inference.py",
    source_dir=source_dir,
    py_version="py36",
    framework_version="1.8",
    predictor_cls=ImagePredictor,
)
predictor = pytorch_model.deploy(initial_instance_count=1, instance_type="ml.m5.large")

# %%
test_class = sorted(os.listdir("dogImages/test"))[3]
test_image = sorted(Path("dogImages/test", test_class).iterdir())[0]
with open(test_image, "rb") as f:
    payload = f.read()
response = predictor.predict(payload, initial_args={"ContentType": "image/jpeg"})
predicted = response["classes"][max(range(len(response["scores"])), key=response["scores"].__getitem__)]
print(f"{test_image.name}: true class {test_class}, predicted {predicted}")

# %%
request_dict = {"url": test_image.resolve().as_uri()}
response = predictor.predict(json.dumps(request_dict), initial_args={"ContentType": "application/json"})
print(f"Same image by URL: {len(response['scores'])} scores")

# %%
same_endpoint = Predictor(predictor.endpoint_name, sagemaker_session=sagemaker_session)
raw = same_endpoint.predict(io.BytesIO(payload).read(), initial_args={"ContentType": "image/jpeg"})
print(f"Raw answer of the plain Predictor: {raw[:60]!r}...")

# %%
predictor.delete_endpoint()
print("NOTEBOOK DONE")
