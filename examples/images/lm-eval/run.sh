#!/usr/bin/env bash
# lm-eval on the model service eval-operator names: its url, model name and auth header come
# from EVAL_* variables; the tasks from LM_EVAL_TASKS (default: capitals).
set -euo pipefail
KEY=${EVAL_AUTHORIZATION_HEADER_KEY:-}
VALUE=${EVAL_AUTHORIZATION_HEADER_VALUE:-}
# A bearer token goes in OPENAI_API_KEY, which lm-eval sends as "Authorization: Bearer ...";
# any other header must go in its model_args, which lm-eval prints and saves with its results.
if [[ $KEY == Authorization && $VALUE == "Bearer "* ]]; then
  export OPENAI_API_KEY=${VALUE#Bearer }
  KEY=""
fi
# model_args as JSON, so that a header value with commas or quotes stays whole.
MODEL_ARGS=$(KEY=$KEY python - <<'PY'
import json, os
args = {
    "base_url": os.environ["EVAL_INFERENCE_URL"],
    "model": os.environ.get("EVAL_MODEL_NAME", "model"),
    "num_concurrent": int(os.environ.get("MAX_CONCURRENCY", "1")),
    "max_retries": int(os.environ.get("MAX_RETRY_PER_QUERY", "3")),
    "tokenizer_backend": None,
}
if os.environ["KEY"]:
    args["header"] = {os.environ["KEY"]: os.environ.get("EVAL_AUTHORIZATION_HEADER_VALUE", "")}
print(json.dumps(args))
PY
)
exec lm_eval --model local-chat-completions --model_args "$MODEL_ARGS" \
  --tasks "${LM_EVAL_TASKS:-capitals}" --include_path /opt/eval/tasks --apply_chat_template \
  --output_path "$EVAL_OUTPUT_DIR"
