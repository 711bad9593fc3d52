//! A background queue: jobs run one at a time on a worker thread; the owner submits specs,
//! cancels by ticket, and drains events without ever blocking (the TUI redraws between drains).

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;

use super::{run_job, CancelToken, Event, Generator, JobError, JobResult, RunOptions};
use crate::engine::registry::{ModelEntry, Registry, ResolvedJob, WeightSearch};
use crate::spec::JobSpec;

/// Builds the generator for a model; called on the worker thread.
pub type GeneratorFactory = Box<
    dyn FnMut(&ModelEntry, &ResolvedJob, &WeightSearch) -> Result<Box<dyn Generator>, JobError>
        + Send,
>;

/// What the queue reports, tagged with the ticket returned by [`Queue::submit`].
#[derive(Debug)]
pub enum QueueEvent {
    Progress(u64, Event),
    Done(u64, Result<JobResult, JobError>),
}

struct Submission {
    ticket: u64,
    spec: JobSpec,
    cancel: CancelToken,
}

pub struct Queue {
    submit: Option<Sender<Submission>>,
    events: Receiver<QueueEvent>,
    cancels: HashMap<u64, CancelToken>,
    next_ticket: u64,
    worker: Option<JoinHandle<()>>,
}

/// Cheap handle for cancelling from another thread (a signal handler, say).
#[derive(Clone)]
pub struct QueueHandle {
    cancels: Vec<CancelToken>,
}

impl QueueHandle {
    pub fn cancel_all(&self) {
        self.cancels.iter().for_each(CancelToken::cancel);
    }
}

impl Queue {
    pub fn start(registry: Registry, opts: RunOptions, mut factory: GeneratorFactory) -> Queue {
        let (submit, jobs) = mpsc::channel::<Submission>();
        let (events_tx, events) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            for s in jobs {
                let tx = events_tx.clone();
                let ticket = s.ticket;
                let result = if s.cancel.is_cancelled() {
                    Err(JobError::Cancelled)
                } else {
                    run_job(
                        &s.spec,
                        &registry,
                        &opts,
                        &mut *factory,
                        &s.cancel,
                        &mut |e| {
                            let _ = tx.send(QueueEvent::Progress(ticket, e));
                        },
                    )
                };
                if events_tx.send(QueueEvent::Done(ticket, result)).is_err() {
                    break; // the owner is gone
                }
            }
        });
        Queue {
            submit: Some(submit),
            events,
            cancels: HashMap::new(),
            next_ticket: 1,
            worker: Some(worker),
        }
    }

    /// Queues a job; returns its ticket.
    pub fn submit(&mut self, spec: JobSpec) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let cancel = CancelToken::new();
        self.cancels.insert(ticket, cancel.clone());
        if let Some(tx) = &self.submit {
            let _ = tx.send(Submission {
                ticket,
                spec,
                cancel,
            });
        }
        ticket
    }

    /// Cancels a queued or running job; it reports `Done(ticket, Err(Cancelled))`.
    pub fn cancel(&self, ticket: u64) {
        if let Some(c) = self.cancels.get(&ticket) {
            c.cancel();
        }
    }

    pub fn handle(&self) -> QueueHandle {
        QueueHandle {
            cancels: self.cancels.values().cloned().collect(),
        }
    }

    /// Every event that has arrived, without blocking.
    pub fn drain(&mut self) -> Vec<QueueEvent> {
        let mut out = Vec::new();
        loop {
            match self.events.try_recv() {
                Ok(e) => {
                    if let QueueEvent::Done(t, _) = &e {
                        self.cancels.remove(t);
                    }
                    out.push(e);
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return out,
            }
        }
    }

    /// Blocks for the next event; `None` once the worker has stopped.
    pub fn recv(&mut self) -> Option<QueueEvent> {
        let e = self.events.recv().ok()?;
        if let QueueEvent::Done(t, _) = &e {
            self.cancels.remove(t);
        }
        Some(e)
    }

    /// Stops accepting jobs and waits for the running one to finish.
    pub fn shutdown(mut self) {
        self.cancels.values().for_each(CancelToken::cancel);
        self.submit.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
