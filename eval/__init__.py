"""HEAR evaluation: prepare task folders, drive the official heareval tools, and tabulate scores.

- `eval.taskdir`: what a HEAR task folder is (the official layout), clear refusals when it is not one, names from a
  task turned into paths safely, and a task's size and chance level.
- `eval.synth`: the built-in generated task suite (`hear-maeast tasks synth`).
- `eval.resample`: a HEAR task tree at another sample rate (`hear-maeast tasks resample`).
- `eval.speech_commands`: raw Speech Commands v0.02 -> the HEAR task (`hear-maeast tasks speech-commands`).
- `eval.runner`: embeddings through `heareval.embeddings.task_embeddings`, scores through
  `python -m heareval.predictions.runner` (`hear-maeast eval`).
- `eval.results`: reading a results folder, the one score reader of `eval` and `table`.
- `eval.table`: leaderboard Markdown / CSV / PNG from results folders (`hear-maeast table`).
- `eval.make_eval`: the main job behind `make eval`.
"""
