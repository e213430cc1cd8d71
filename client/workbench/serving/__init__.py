"""The serving runtime of the platform's serving containers: kserve models for each model format.

`python -m workbench.serving` serves the model in WORKBENCH_MODEL_DIR over HTTP (v1 and v2);
`python -m workbench.serving.batch` runs it over a folder of inputs. Only this package's spec
module works without kserve and the model's framework; the rest runs inside the containers.
"""
