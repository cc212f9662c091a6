//! The commands clients send, one line each, and their replies: each command gets exactly one
//! reply, echoing its `id`, in the order the commands came.

use std::sync::Arc;
use std::time::SystemTime;

use crossbeam_channel::TrySendError;
use mio::Token;

use super::client::MAX_REFUSED;
use super::retention::Entry;
use super::{Answered, SocketServer};
use crate::pipeline::{Control, Trigger, TriggerAnswer};
use crate::verdict::{StatusEvent, StatusKind};
use crate::wire::{self, ClientId, Command, Message, PROTOCOL_VERSION, ReportedEvent, TriggerMode};

/// `error {reason}` as a line.
pub(super) fn error_line(id: Option<ClientId>, reason: String) -> String {
    wire::line(&Message::Error(wire::WireError {
        v: PROTOCOL_VERSION,
        id,
        reason,
    }))
}

fn now() -> String {
    wire::rfc3339_micros(SystemTime::now())
}

impl SocketServer {
    /// One line from a client: rate limit, parse, carry out, reply.
    pub(super) fn command_line(&mut self, token: Token, line: &[u8]) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        let line = line.trim_ascii();
        if line.is_empty() {
            return;
        }
        if !client.bucket.take() {
            client.refused += 1;
            if client.refused >= MAX_REFUSED {
                tracing::warn!(
                    client = client.id,
                    refused = client.refused,
                    "verdict client keeps flooding commands"
                );
                return self.close_with_error(token, None, "rate limited");
            }
            if client.refused == 1 || client.refused.is_power_of_two() {
                tracing::warn!(
                    client = client.id,
                    refused = client.refused,
                    "verdict client over its command rate"
                );
            }
            client.reply(error_line(None, "rate limited".into()));
            return;
        }
        match wire::parse_command(line) {
            Ok(command) => self.command(token, command),
            Err((id, reason)) => {
                tracing::debug!(client = client.id, %reason, "refused a command");
                client.reply(error_line(id, reason));
            }
        }
    }

    fn command(&mut self, token: Token, command: Command) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        let id = command.id().cloned();
        let needs_control = matches!(command, Command::Trigger { .. } | Command::Report { .. });
        if needs_control && !client.control {
            tracing::info!(
                client = client.id,
                uid = client.peer.as_ref().map(|p| p.uid),
                "verdict client may not command"
            );
            return client.reply(error_line(id, "not permitted".into()));
        }
        let reply = match command {
            Command::Trigger { part_id, .. } => return self.trigger(token, id, part_id),
            Command::Subscribe { from_seq, .. } => return self.subscribe(token, id, from_seq),
            Command::Ack { seq, .. } => {
                client.acked_seq = Some(seq);
                Message::Acked(wire::Acked {
                    v: PROTOCOL_VERSION,
                    id,
                    seq,
                })
            }
            Command::Ping { .. } => Message::Pong(wire::Pong {
                v: PROTOCOL_VERSION,
                id,
                at: now(),
            }),
            Command::Status { .. } => self.snapshot(id),
            Command::Report {
                event,
                source,
                reason,
                ..
            } => self.report(token, id, event, source, reason),
        };
        if let Some(client) = self.clients.get_mut(&token) {
            client.reply(wire::line(&reply));
        }
    }

    fn snapshot(&self, id: Option<ClientId>) -> Message {
        let s = &self.state;
        let mut clients: Vec<wire::ClientInfo> = self
            .clients
            .values()
            .map(|c| wire::ClientInfo {
                client: c.id,
                uid: c.peer.as_ref().map_or(u32::MAX, |p| p.uid),
                control: c.control,
                acked_seq: c.acked_seq,
            })
            .collect();
        clients.sort_by_key(|c| c.client);
        Message::Snapshot(Box::new(wire::Snapshot {
            v: PROTOCOL_VERSION,
            id,
            run_id: s.run_id.clone(),
            seq: s.seq,
            uptime_s: s.started.elapsed().as_secs_f64(),
            trigger_mode: s.trigger_mode,
            camera: s.camera.to_string(),
            model_sha256: s.model_sha256.to_string(),
            reference_set: s.reference_set.to_string(),
            counters: s.counters,
            fps: s.fps(),
            retained: self.ring.retained(),
            clients,
            model: s.model.clone(),
            plc_links: s.plc_links.clone(),
            stats: Some(s.stats.to_wire()),
        }))
    }

    /// A client's PLC-link event: broadcast, retained and logged like the pipeline's.
    fn report(
        &mut self,
        token: Token,
        id: Option<ClientId>,
        event: ReportedEvent,
        source: String,
        reason: Option<String>,
    ) -> Message {
        let kind = match event {
            ReportedEvent::PlcLinkLost => StatusKind::PlcLinkLost,
            ReportedEvent::PlcLinkRestored => StatusKind::PlcLinkRestored,
        };
        let status = StatusEvent {
            kind,
            source: Arc::from(source.as_str()),
            at: SystemTime::now(),
            reason,
            after_seq: self.state.seq,
            reference_set: None,
            previous_reference_set: None,
        };
        self.state
            .plc_link(&status.source, kind == StatusKind::PlcLinkRestored);
        let client = self.clients.get(&token).map(|c| c.id);
        let reason = status.reason.as_deref().unwrap_or("");
        // As the sequencer logs the pipeline's status events, plus the reporting client.
        match kind {
            StatusKind::PlcLinkLost => tracing::warn!(
                source = %status.source,
                reason,
                after_seq = status.after_seq,
                client,
                "a bridge reports its PLC link lost"
            ),
            _ => tracing::info!(
                source = %status.source,
                after_seq = status.after_seq,
                client,
                "a bridge reports its PLC link restored"
            ),
        }
        let line: Arc<str> = Arc::from(wire::status_line(&status));
        for c in self.clients.values_mut() {
            c.push_live(&line);
        }
        self.ring.push(Entry {
            verdict_seq: None,
            follows: self.state.seq,
            line,
        });
        Message::Reported(wire::Reported {
            v: PROTOCOL_VERSION,
            id,
            event,
        })
    }

    /// `subscribe`: the reply, then a gap if verdicts after `from_seq` are gone, then the
    /// retained lines after `from_seq` (fed from the ring as the client reads), then live.
    fn subscribe(&mut self, token: Token, id: Option<ClientId>, from_seq: u64) {
        let resume = self.ring.resume(from_seq);
        let to_seq = self.state.seq;
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        client.drop_unsent_stream();
        client.reply(wire::line(&Message::Subscribed(wire::Subscribed {
            v: PROTOCOL_VERSION,
            id,
            from_seq,
            to_seq,
        })));
        if let Some(missing) = resume.missing {
            let gap = wire::line(&Message::Gap(wire::Gap {
                v: PROTOCOL_VERSION,
                from_seq: missing.from_seq,
                to_seq: missing.to_seq,
                count: missing.to_seq - missing.from_seq + 1,
            }));
            client
                .queue
                .push_back(super::Queued::Stream(Arc::from(gap)));
        }
        client.cursor = (resume.start < self.ring.end_index()).then_some(resume.start);
        tracing::debug!(
            client = client.id,
            from_seq,
            to_seq,
            missing = ?resume.missing,
            "verdict client resumed"
        );
    }

    fn trigger(&mut self, token: Token, id: Option<ClientId>, part_id: Option<String>) {
        self.state.counters.triggers += 1;
        let Some(client) = self.clients.get(&token) else {
            return;
        };
        let client_id = client.id;
        let missed = match (&self.control, self.state.trigger_mode) {
            (_, TriggerMode::FreeRun) => Some("not in trigger mode".to_string()),
            (None, TriggerMode::Command) => Some("source ended".to_string()),
            (Some(control), TriggerMode::Command) => {
                let (answers, waker) = (self.answers.0.clone(), self.waker.clone());
                let (answer_id, answer_part) = (id.clone(), part_id.clone());
                let answer = Box::new(move |answer: TriggerAnswer| {
                    let answered = Answered {
                        token,
                        client: client_id,
                        id: answer_id,
                        part_id: answer_part,
                        answer,
                    };
                    if answers.try_send(answered).is_err() {
                        tracing::warn!(
                            client = client_id,
                            "trigger answer lost: the socket loop is gone or behind"
                        );
                    }
                    let _ = waker.wake();
                });
                let trigger = Trigger {
                    part_id: part_id.clone(),
                    answer,
                };
                match control.try_send(Control::Trigger(trigger)) {
                    Ok(()) => None,
                    Err(TrySendError::Full(_)) => {
                        Some(format!("busy: {} triggers waiting", control.len()))
                    }
                    Err(TrySendError::Disconnected(_)) => Some("source ended".to_string()),
                }
            }
        };
        if let Some(reason) = missed {
            self.missed(token, id, part_id, reason);
        }
    }

    fn missed(
        &mut self,
        token: Token,
        id: Option<ClientId>,
        part_id: Option<String>,
        reason: String,
    ) {
        self.state.counters.triggers_missed += 1;
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        tracing::info!(client = client.id, part_id = part_id.as_deref(), %reason, "trigger missed");
        client.reply(wire::line(&Message::TriggerMissed(wire::TriggerMissed {
            v: PROTOCOL_VERSION,
            id,
            part_id,
            reason,
        })));
    }

    /// The source's answers to triggers, each to the client that asked (if still connected).
    pub(super) fn take_answers(&mut self) {
        while let Ok(a) = self.answers.1.try_recv() {
            let token = match self.clients.get(&a.token) {
                Some(c) if c.id == a.client => a.token,
                // Gone: the answer is still counted.
                _ => Token(usize::MAX),
            };
            match a.answer {
                TriggerAnswer::Acked { acq_id } => {
                    if let Some(client) = self.clients.get_mut(&token) {
                        client.reply(wire::line(&Message::TriggerAck(wire::TriggerAck {
                            v: PROTOCOL_VERSION,
                            id: a.id,
                            acq_id,
                            part_id: a.part_id,
                        })));
                    }
                }
                TriggerAnswer::Missed { reason } => self.missed(token, a.id, a.part_id, reason),
            }
            self.flush(token);
        }
    }
}
