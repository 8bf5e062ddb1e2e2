# spotrun.local/torch:<torch version>-<hash>: the local Python base + torch from PyPI, the
# stand-in for the official PyTorch image (trainer/Dockerfile's PYTORCH_IMAGE) where no image
# can be pulled. PyPI's Linux torch brings its nvidia-* wheels (it will not import without
# them, even on CPU): about 4 GB. Built by hack/kind/images.
ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE}
ARG TORCH_VERSION
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN pip install "torch==${TORCH_VERSION}" \
 && python -c "import torch; print('torch', torch.__version__)"
