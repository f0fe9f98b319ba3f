//! Process managers: long-running workers that follow the event log through a projection
//! `Subscription`, decide, and issue commands whose ids are derived from the events they react
//! to, so that a redelivery or a restart is deduplicated by the event store, never by luck.
//!
//! Empty today. The embedding worker, the agent runtime, the scheduler and the alerter land
//! here, each with its own module, run in-process by `plasma dev` and as processes of their own
//! in server mode.
