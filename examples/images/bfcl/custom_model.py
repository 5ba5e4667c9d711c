# ruff: noqa: F821  (appended to bfcl_eval/constants/model_config.py, which defines the names)

# add custom model (the custom-evaluation example's addition to model_config.py): the model
# service to evaluate is an OpenAI-compatible endpoint named by MODEL_NAME.
import os

CUSTOM_MODEL_NAME = os.getenv("MODEL_NAME", "")
if CUSTOM_MODEL_NAME:
    MODEL_CONFIG_MAPPING.update(
        {
            CUSTOM_MODEL_NAME: ModelConfig(
                model_name=CUSTOM_MODEL_NAME,
                display_name=CUSTOM_MODEL_NAME,
                url="",
                org="Custom",
                license="apache-2.0",
                model_handler=OpenAICompletionsHandler,
                input_price=None,
                output_price=None,
                is_fc_model=True,
                underscore_to_dot=True,
            )
        }
    )
