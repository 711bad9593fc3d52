//! Generation pipelines: sampling loops that tie the models and schedulers together.
