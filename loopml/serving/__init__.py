"""Stage 4, serving: the predictor (ONNX or scikit-learn, :mod:`.predictor`), the champion held in memory
(:mod:`.server`), the prediction log (:mod:`.prediction_log`), feedback labels (:mod:`.feedback`) and
canary rollouts (:mod:`.rollout`). No pandas, scikit-learn or pyarrow on the ONNX path."""
