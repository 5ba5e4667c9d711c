# Scores the answers (the example's evaluate.sh; extra arguments go to the checker, e.g.
# --partial-eval after run.sh --run-ids).
TEST_CATEGORY="simple_python"
export MODEL_NAME=$MODEL_NAME
export OPENAI_BASE_URL=${EVAL_INFERENCE_URL%/chat/completions}
export OPENAI_API_KEY="${EVAL_AUTHORIZATION_HEADER_VALUE#Bearer* }"
python -m bfcl_eval.eval_checker.eval_runner --model $MODEL_NAME --test-category $TEST_CATEGORY "$@"
