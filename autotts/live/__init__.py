"""Live inference: the controller contract played against real backends (vLLM in process or
any OpenAI-compatible server), live validation next to replay, and the builders that turn
live generation into replay stores (``autotts build-env``, ``autotts envs probe``)."""
