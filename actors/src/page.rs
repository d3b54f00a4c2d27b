//! Keyset pagination shared by every list. Items are ordered by a sort key (a timestamp)
//! and the id as a tie-breaker; a page request carries the key of the last item already
//! seen, so pages stay stable while rows are inserted. The opaque cursor text is an HTTP
//! concern; here it is a plain struct.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Largest page the service returns; larger requested limits act as this.
pub const MAX_LIMIT: u32 = 500;
/// Page size when the client names none.
pub const DEFAULT_LIMIT: u32 = 50;

/// The position after which a page starts: the sort key and id of the last item seen.
/// Ordered as lists are: by `at`, then by `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageKey {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl PageKey {
    /// Before every key.
    pub const MIN: Self = Self {
        at: DateTime::<Utc>::MIN_UTC,
        id: Uuid::nil(),
    };
    /// After every key.
    pub const MAX: Self = Self {
        at: DateTime::<Utc>::MAX_UTC,
        id: Uuid::max(),
    };
}

/// Which items to return: at most `limit` items strictly after `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    limit: u32,
    pub after: Option<PageKey>,
}

impl PageRequest {
    /// `limit` is clamped to 1..=[`MAX_LIMIT`]; the HTTP edge rejects 0 before this.
    pub fn new(limit: u32, after: Option<PageKey>) -> Self {
        Self {
            limit: limit.clamp(1, MAX_LIMIT),
            after,
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Stores fetch one extra row to learn whether another page exists.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self::new(DEFAULT_LIMIT, None)
    }
}

/// Items that can be listed: they know their position in list order.
pub trait Keyed {
    fn page_key(&self) -> PageKey;
}

/// One page of items; `next` is set exactly when more items existed when it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageKey>,
}

impl<T: Keyed> Page<T> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only proves that a
    /// next page exists and is dropped.
    pub fn from_overfetch(mut rows: Vec<T>, req: &PageRequest) -> Self {
        let limit = req.limit() as usize;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(Keyed::page_key)
        } else {
            None
        };
        Self { items: rows, next }
    }
    /// The page of `rows` (given in any order) in list order `(created_at, id)`, strictly
    /// after the page key: the memory stores' form of the keyset query.
    pub fn in_list_order<'a>(rows: impl Iterator<Item = &'a T>, req: &PageRequest) -> Self
    where
        T: Clone + 'a,
    {
        let order = |row: &T| {
            let key = row.page_key();
            (key.at, key.id)
        };
        let mut rows: Vec<T> = rows
            .filter(|r| req.after.is_none_or(|k| order(r) > (k.at, k.id)))
            .cloned()
            .collect();
        rows.sort_by_key(order);
        rows.truncate(req.fetch_limit() as usize);
        Self::from_overfetch(rows, req)
    }
}
