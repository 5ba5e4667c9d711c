# save_metric.py (the example's): BFCL's accuracy as eval-operator's metrics.json
import json
import os

# the output folder
output_dir = os.getenv("EVAL_OUTPUT_DIR")
model_name = os.getenv("MODEL_NAME")
# the result
original_result_file = os.path.join(
    "score", model_name, "non_live", "BFCL_v4_simple_python_score.json"
)
with open(original_result_file) as f:
    first_line = f.readline().strip()
original_result = json.loads(first_line)
result = {
    "metrics": [
        {"name": "accuracy", "value": original_result["accuracy"]},
    ]
}
# write the results file
result_file = os.path.join(output_dir, "metrics.json")
with open(result_file, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2, ensure_ascii=False)
