# Generates the model's answers (the example's run.sh; extra arguments go to the generator,
# e.g. --run-ids for the cases in test_case_ids_to_generate.json).
TEST_CATEGORY="simple_python"
export MODEL_NAME=$MODEL_NAME
export OPENAI_BASE_URL=${EVAL_INFERENCE_URL%/chat/completions}
export OPENAI_API_KEY="${EVAL_AUTHORIZATION_HEADER_VALUE#Bearer* }"
python openfunctions_evaluation.py --model $MODEL_NAME --test-category $TEST_CATEGORY --num-threads 16 "$@"
