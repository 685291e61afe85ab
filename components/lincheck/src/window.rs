//! The explanation of a failed key: a short window of its history around the op that could
//! not be placed.
//!
//! Invariants:
//! 1. The window ends with the events invoked before the stuck op completed, and starts at a
//!    quiescent cut the search reached (no acknowledged op in flight), preferring the latest
//!    cut where the register had a single possible value.
//! 2. It holds at most [`WINDOW_EVENTS_MAX`] events plus at most [`PENDING_MAX`] earlier
//!    unknown writes that may still take effect inside it, and a line per omission. In a
//!    history so busy that no quiescent cut is that close, it is the last events before the
//!    stuck op completed, and `state_before` says the value there is not known.
//! 3. It shows every event of the key in that time range, including the ones the check
//!    removed (failed ops, unknown gets), as the client recorded them.

use crate::history::{Invalid, Prepared};
use crate::render;
use crate::search::{Cut, Failure};
use crate::{Event, Verdict};

/// Most events of the key shown in a window.
pub(crate) const WINDOW_EVENTS_MAX: usize = 50;
/// Most unknown writes from before the window listed as possibly landing inside it.
pub(crate) const PENDING_MAX: usize = 10;
/// Appended to the line of the op that could not be placed.
const STUCK_MARK: &str = "   <-- cannot be placed";

/// The verdict for an acknowledged answer that no register can give.
pub(crate) fn for_invalid(events: &[&Event], invalid: &Invalid) -> Verdict {
    let event = events[invalid.event];
    Verdict::NotLinearizable {
        window: vec![format!("{event}{STUCK_MARK}")],
        state_before: "any (no value explains this answer)".to_string(),
        stuck_op: format!("{event}: {}", invalid.why.describe()),
    }
}

/// The verdict for a search that got stuck, with its window.
pub(crate) fn for_failure(events: &[&Event], p: &Prepared, failure: &Failure) -> Verdict {
    let stuck = p.ops[failure.stuck_op];
    let end_ns = stuck.complete_ns;
    // 1. Events by invoke time, to count and list a time range.
    let mut by_invoke: Vec<usize> = (0..events.len()).collect();
    by_invoke.sort_by_key(|&i| (events[i].invoke_ns, i));
    let in_range = |start_ns: u64| -> &[usize] {
        let lo = by_invoke.partition_point(|&i| events[i].invoke_ns < start_ns);
        let hi = by_invoke.partition_point(|&i| events[i].invoke_ns <= end_ns);
        &by_invoke[lo..hi.max(lo)]
    };
    // 2. Pick the cut, then list what happened from it to the stuck op.
    let cut = choose_cut(&failure.cuts, |cut| in_range(p.ops[cut.next_op].invoke_ns).len());
    let cut_ns = cut.map_or(0, |c| p.ops[c.next_op].invoke_ns);
    let shown = in_range(cut_ns);
    let omitted = shown.len().saturating_sub(WINDOW_EVENTS_MAX);
    let shown = &shown[omitted..];
    let start_ns = shown.first().map_or(cut_ns, |&i| events[i].invoke_ns);
    let mut window = pending_unknown_writes(events, p, start_ns);
    if omitted > 0 {
        window.push(format!("... {omitted} earlier events omitted"));
    }
    for &i in shown {
        let mark = if i == stuck.event { STUCK_MARK } else { "" };
        window.push(format!("{}{mark}", events[i]));
    }
    let state_before = match cut {
        None => "unknown".to_string(),
        Some(c) if omitted > 0 => format!(
            "not known here (no quiescent point in the window); {} at the last one, {omitted} \
             events earlier",
            describe_values(p, c)
        ),
        Some(c) => describe_values(p, c),
    };
    Verdict::NotLinearizable { window, state_before, stuck_op: events[stuck.event].to_string() }
}

/// The latest cut whose window fits, preferring the latest with a single value; the latest
/// cut of all when none fits. `events_from` counts a cut's window.
fn choose_cut(cuts: &[Cut], events_from: impl Fn(&Cut) -> usize) -> Option<&Cut> {
    let mut chosen: Option<&Cut> = None;
    for cut in cuts.iter().rev() {
        if chosen.is_some() && events_from(cut) > WINDOW_EVENTS_MAX {
            break;
        }
        if chosen.is_none() {
            chosen = Some(cut);
        }
        if cut.values.len() == 1 && !cut.more_values {
            return Some(cut);
        }
    }
    chosen
}

/// Unknown writes the search kept, invoked before `start_ns`: they may take effect inside
/// the window.
fn pending_unknown_writes(events: &[&Event], p: &Prepared, start_ns: u64) -> Vec<String> {
    let mut pending: Vec<usize> =
        p.ops.iter().filter(|o| !o.known && o.invoke_ns < start_ns).map(|o| o.event).collect();
    pending.sort_by_key(|&i| (events[i].invoke_ns, i));
    let mut lines: Vec<String> = pending
        .iter()
        .take(PENDING_MAX)
        .map(|&i| format!("(unknown, invoked earlier, may land here) {}", events[i]))
        .collect();
    if pending.len() > PENDING_MAX {
        lines.push(format!(
            "... and {} more unknown writes invoked earlier",
            pending.len() - PENDING_MAX
        ));
    }
    lines
}

fn describe_values(p: &Prepared, cut: &Cut) -> String {
    let values: Vec<String> =
        cut.values.iter().map(|&v| render::value(p.values.value(v))).collect();
    match (values.as_slice(), cut.more_values) {
        ([one], false) => one.clone(),
        (many, more) => {
            let etc = if more { " | ..." } else { "" };
            format!("one of: {}{etc}", many.join(" | "))
        }
    }
}
