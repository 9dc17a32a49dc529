//! Answering one request, the same way for every operation: take it in (refusals answered
//! as the operation's error), then for a streamed operation `Accepted`, admission (`Alive`
//! while waiting), the handler's run (`Alive` whenever it is quiet), and the final event.

use super::call::take;
use super::inflight::InFlight;
use super::stats::{Counters, Outcome};
use super::{Admission, Call, Handler, StreamHandler};
use ozone_bus_schemas::operation::{Operation, Refusal, Streamed, ALIVE_MS, MAX_REQUEST_ID_BYTES};
use ozone_nats::bus::Bus;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ALIVE: Duration = Duration::from_millis(ALIVE_MS);

pub(super) async fn one<Op: Operation, H: Handler<Op>>(
    bus: &Bus,
    handler: Arc<H>,
    counters: &Counters,
    msg: async_nats::Message,
) {
    let Some((replier, request)) = take::<Op>(bus, &msg).await else {
        return; // refused and audited by the bus: nobody to answer
    };
    counters.took();
    let request = match request {
        Ok(r) => r,
        Err(refusal) => {
            counters.ended(Outcome::Refused);
            return replier.fail::<Op>(refusal.into()).await;
        }
    };
    match handler.handle(request, replier.sender().clone()).await {
        Ok(reply) => {
            counters.ended(Outcome::Answered);
            replier.send(&reply).await;
        }
        Err(e) => {
            counters.ended(Outcome::Failed);
            replier.fail::<Op>(e).await
        }
    }
}

/// What every request of one streamed operation shares.
pub(super) struct StreamCtx<H> {
    pub(super) bus: Bus,
    pub(super) handler: Arc<H>,
    pub(super) admission: Option<Arc<Admission>>,
    pub(super) inflight: Arc<InFlight>,
    pub(super) worker: Arc<str>,
    pub(super) counters: Arc<Counters>,
}

pub(super) async fn stream<Op: Streamed, H: StreamHandler<Op>>(
    ctx: Arc<StreamCtx<H>>,
    msg: async_nats::Message,
) {
    let taken = Instant::now();
    let Some((replier, request)) = take::<Op>(&ctx.bus, &msg).await else {
        return;
    };
    let replier = Arc::new(replier);
    ctx.counters.took();
    let fail = |e: Op::Error, outcome| {
        ctx.counters.ended(outcome);
        ctx.handler.failed(&e);
        replier.fail::<Op>(e)
    };
    let request = match request.and_then(valid_id::<Op>) {
        Ok(r) => r,
        Err(refusal) => return fail(refusal.into(), Outcome::Refused).await,
    };
    let running = ctx
        .inflight
        .start(replier.sender().clone(), Op::request_id(&request));
    let checked = match ctx.handler.check(request) {
        Ok(c) => c,
        Err(e) => return fail(e, Outcome::Failed).await,
    };
    replier.send(&Op::accepted(&ctx.worker)).await;
    let slot = match &ctx.admission {
        None => None,
        Some(a) => match a
            .enter(ALIVE, || async {
                replier.send(&Op::alive()).await;
            })
            .await
        {
            Ok(slot) => Some(slot),
            Err(refusal) => return fail(refusal.into(), Outcome::Refused).await,
        },
    };
    let call = Call::new(
        replier.clone(),
        running.cancel.clone(),
        ctx.worker.clone(),
        taken.elapsed(),
    );
    let run = ctx.handler.clone().run(checked, call);
    tokio::pin!(run);
    // Half the interval, so the requester never waits much more than `ALIVE` for a sign.
    let mut tick = tokio::time::interval(ALIVE / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        tokio::select! {
            outcome = &mut run => break outcome,
            _ = tick.tick() => {
                if replier.idle() >= ALIVE {
                    replier.send(&Op::alive()).await;
                }
            }
        }
    };
    drop(slot); // the work is over: the next request may start while this one's answer goes
    match outcome {
        Ok(last) => {
            ctx.counters.ended(Outcome::Answered);
            replier.send(&last).await;
        }
        Err(e) => fail(e, Outcome::Failed).await,
    }
}

fn valid_id<Op: Streamed>(request: Op::Request) -> Result<Op::Request, Refusal> {
    let n = Op::request_id(&request).len();
    if n == 0 || n > MAX_REQUEST_ID_BYTES {
        return Err(Refusal::Invalid(format!(
            "request_id must be 1 to {MAX_REQUEST_ID_BYTES} bytes"
        )));
    }
    Ok(request)
}
