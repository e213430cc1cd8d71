"""`python -m workbench.serving`: serve WORKBENCH_MODEL_DIR's model with kserve's ModelServer."""

from __future__ import annotations

import logging
import sys
import warnings

from .formats import load_from_env
from .spec import ModelLoadError

log = logging.getLogger("workbench.serving")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        model, port = load_from_env()
    except ModelLoadError as e:
        log.error("cannot serve: %s", e)
        return 2
    import kserve

    # kserve 0.21's routes use FastAPI's ORJSONResponse, which newer FastAPI warns about per call
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")

    log.info("serving %s (%s) on port %s", model.name, type(model).__name__, port)
    kserve.ModelServer(http_port=port, enable_grpc=False, workers=1).start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
