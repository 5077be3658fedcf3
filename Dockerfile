# The pipeline image for Kubeflow Pipelines 2.x and Vertex AI: every component runs in it.
#   make image SPEC=examples/penguins/spec.yaml   # tags it with the spec's kubeflow.image
# TFX's own image is the base: Python 3.10, TFX 1.16.0 and CUDA for the Trainer's GPU.
FROM gcr.io/tfx-oss-public/tfx:1.16.0

WORKDIR /opt/lamina-src
# Exactly the locked stack (the versions `make test` runs), then Lamina without dependencies. Every
# component starts a fresh container: with the modules compiled in the image, none of them compiles
# TensorFlow's, TFX's and Beam's sources again at start-up (10-15 s each, docs/benchmarks.md).
COPY requirements.lock ./
RUN python -m pip install --no-cache-dir uv==0.13.9 \
 && uv pip install --system --no-cache --no-deps --compile-bytecode -r requirements.lock
COPY pyproject.toml README.md ./
COPY lamina ./lamina
COPY pipeline ./pipeline
COPY components ./components
COPY models ./models
COPY serving ./serving
COPY examples ./examples
RUN uv pip install --system --no-cache --no-deps --compile-bytecode .
# Components run as an unprivileged user (uid 1000, what Pod securityContext runAsUser usually
# names), in a folder without the sources: `python -m` puts the working directory first on
# sys.path, and the checkout's lamina/ folder would shadow the installed package.
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin lamina \
 && mkdir -p /workspace && chown lamina:lamina /workspace
USER lamina
WORKDIR /workspace

# Keras 3 (not tf.keras 2): the export path Lamina settled on (docs/stack.md). oneDNN off: TFX's
# executor imports TensorFlow before Lamina can set it (docs/stack.md).
ENV TF_USE_LEGACY_KERAS=0 \
    TF_ENABLE_ONEDNN_OPTS=0 \
    PYTHONUNBUFFERED=1

# TFX's KFP v2 executor entrypoint; the compiled pipeline passes each component's executor args.
ENTRYPOINT ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
