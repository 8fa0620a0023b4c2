"""Running exported models with the numbers they were exported with.

OpenVINO's CPU plugin runs a model in bfloat16 by default on CPUs with native bf16 support
(AVX512_BF16 or AMX: recent Xeon and EPYC parts), whatever precision the IR was saved in, and an
IR cannot ask for more. In bf16, this package's distances and reconstruction errors moved the
normalised scores by up to 7% in the tests (LDKNN's squared distances are differences of large numbers), so
compile with :data:`EXACT_CPU_CONFIG` to run the exported FP32 graph as exported. On CPUs without
bf16 the configuration changes nothing.

Example:
    >>> from anomalib_pdae.deploy import EXACT_CPU_CONFIG
    >>> EXACT_CPU_CONFIG
    {'INFERENCE_PRECISION_HINT': 'f32'}

    With anomalib's inferencer: ``OpenVINOInferencer(path, device="CPU", config=EXACT_CPU_CONFIG)``.
"""

EXACT_CPU_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}
