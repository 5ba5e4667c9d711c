"""The leaderboard folder's generation entry point, on the installed bfcl-eval package."""

from bfcl_eval._llm_response_generation import get_args, main

if __name__ == "__main__":
    main(get_args())
