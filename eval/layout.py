"""The results folder: the one home of its layout and of every file name in it. `hear-maeast eval` (eval/runner.py),
`probe` (eval/probes/run.py) and `finetune` (eval/finetune.py) write it, `table` reads it (eval/results.py);
eval/runs.py owns the rules of a run folder (identity, staleness, task content, locks). Nothing here imports eval.

    RESULTS/<model>/run.json            which model a run scored, with which options and software (`RUN`, below)
    RESULTS/<model>/<task>/             heareval's embeddings folder for the task (`hear-maeast eval`; `probe`
                                        computes it with the same code when missing or stale):
        <split>.embeddings.npy, <split>.embedding-dimensions.json, <split>.target-labels.pkl   (`EMBEDDING_FILES`;
                                        event tasks also <split>.filename-timestamps.json)
        .done.embeddings                embeddings finished (`EMBEDDINGS_DONE`, heareval's own marker, written last)
        test.predicted-scores.json      heareval's scores (`SCORES`; the leaderboard number is read from it)
        prediction-done.json            heareval's predictions runner finished (`PREDICTION_DONE`)
        <split>.predictions.pkl         {"target", "prediction", "prediction_logit"} tensors (`PREDICTIONS`; the
                                        file `table --against` pairs, eval/paired.py)
        task_metadata.json, labelvocabulary.csv, <split>.json   copies of the task's files (eval.runs.same_task)
        failed.json                     what went wrong, when it did (`FAILED_JSON`)
        not-applicable.json             a protocol that does not apply (`NOT_APPLICABLE`): `n/a` in the table
    RESULTS/<model>-<probe>/            `hear-maeast probe` (linear, knn, mlp): the same files per task, and
        <task>/probe-done.json          the embeddings' sha256 and the options the scores belong to (`PROBE_DONE`)
    RESULTS/<model>-finetuned/          `hear-maeast finetune` (`FINETUNED_SUFFIX`): per task the same score file
        <task>/<fold>.finetune.json     a finished fold (kept on resume); <fold>.finetune-state.pt: its training
                                        state after the last finished epoch; <fold>.model/.head.safetensors with
                                        --save-models

run.json, all protocols: name, protocol (absent: heareval's probe; "finetune"), module, model_file_path,
weights_file, hear_maeast_version, git_commit, tasks_dir, and after the run `tasks`: {task: {"status": one of
`STATUSES`, ...}}; "embedded" (`EMBEDDED`, in a model's folder): `hear-maeast probe` embedded the task, heareval
has not scored it.
    probe:    model_options, weights_sha256, package, package_version, sample_rate, *_embedding_size, grid
    finetune: model_sha256, preset, options (every FinetuneConfig field but save_models), seed, epochs
    linear, knn, mlp: the probe's identity keys, seed, grid, and the embeddings folder it read
"""

from __future__ import annotations

from hear_maeast.errors import WorkFailed

RUN = "run.json"
EMBEDDING_FILES = ("embeddings.npy", "embedding-dimensions.json", "target-labels.pkl")  # per split, heareval's
EVENT_TIMESTAMPS = "filename-timestamps.json"  # per split of an event task, heareval's
EMBEDDINGS_DONE = ".done.embeddings"
SCORES = "test.predicted-scores.json"
PREDICTION_DONE = "prediction-done.json"
PREDICTIONS = ".predictions.pkl"  # heareval's <split>.predictions.pkl
FAILED_JSON = "failed.json"
NOT_APPLICABLE = "not-applicable.json"
PROBE_DONE = "probe-done.json"
FINETUNED_SUFFIX = "-finetuned"  # `hear-maeast finetune` rows: never collide with probe rows
DONE, FAILED, NA, EMBEDDED = "done", "failed", "n/a", "embedded"
STATUSES = (DONE, FAILED, NA, EMBEDDED)


class ResultsError(WorkFailed):
    """A results folder holds a file that cannot be read; the message names it and says how to redo it."""
