//! The tool list learnt from the first call: the child spawned for a request also answers
//! `tools/list` (sent right after `notifications/initialized`, before the request, read
//! alongside it), so a worker that does not know a server's tools yet learns them (and the
//! cache policy they carry) without another spawn. Pagination is followed within a page
//! count and a byte budget; a list that does not fit, fails or comes late is simply not
//! returned, and never fails the request.

use std::time::Duration;

use serde_json::Value;
use serde_json::value::RawValue;

use super::{UpstreamError, UpstreamSession, timeout};
use crate::protocol::jsonrpc::json_string;

/// Most pages of a `tools/list` followed alongside a request.
pub const MAX_LIST_PAGES: usize = 50;

/// Most bytes of `tools/list` pages read alongside a request.
pub const MAX_LIST_BYTES: usize = 4 * 1024 * 1024;

/// How long the list may still take once the request itself has been answered.
const LIST_GRACE: Duration = Duration::from_secs(2);

/// The id of the request itself.
const CALL_ID: &str = "1";

/// Pages of the list read so far.
#[derive(Default)]
struct Pages {
    tools: Vec<Value>,
    bytes: usize,
    count: usize,
    state: PageState,
}

#[derive(Default, PartialEq, Eq)]
enum PageState {
    /// Waiting for the page of this id (raw JSON).
    Pending(String),
    Complete,
    /// Too large, too many pages, an error or late: the list is not returned.
    #[default]
    Abandoned,
}

impl Pages {
    fn next_id(&self) -> String {
        (100 + self.count).to_string()
    }

    fn finished(&self) -> bool {
        !matches!(self.state, PageState::Pending(_))
    }

    /// Takes in one page; the cursor of the next page to ask for, if any.
    fn add(&mut self, page: &RawValue) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tools: Vec<Value>,
            #[serde(default, rename = "nextCursor")]
            next_cursor: Option<String>,
        }
        self.count += 1;
        self.bytes += page.get().len();
        let Ok(page) = serde_json::from_str::<Page>(page.get()) else {
            self.state = PageState::Abandoned;
            return None;
        };
        if self.bytes > MAX_LIST_BYTES {
            self.state = PageState::Abandoned;
            return None;
        }
        self.tools.extend(page.tools);
        match page.next_cursor {
            None => {
                self.state = PageState::Complete;
                None
            }
            Some(_) if self.count >= MAX_LIST_PAGES => {
                self.state = PageState::Abandoned;
                None
            }
            Some(cursor) => {
                self.state = PageState::Pending(self.next_id());
                Some(cursor)
            }
        }
    }

    fn into_tools(self) -> Option<Vec<Value>> {
        (self.state == PageState::Complete).then_some(self.tools)
    }
}

impl UpstreamSession<'_> {
    fn list_request(&self, id: &str, cursor: Option<&str>) -> String {
        let params = match cursor {
            Some(c) => format!(r#"{{"cursor":{}}}"#, json_string(c)),
            None => "{}".to_string(),
        };
        match RawValue::from_string(params) {
            Ok(params) => self.request_line(id, "tools/list", Some(&params)),
            Err(_) => self.request_line(id, "tools/list", None),
        }
    }

    /// Sends `tools/list`, then the request, and reads both: the request must answer within
    /// `limit`; the list may take [`LIST_GRACE`] more, else it is dropped.
    pub(super) async fn request_with_tools(
        &mut self,
        method: &str,
        params: Option<&RawValue>,
        limit: Duration,
    ) -> Result<(Box<RawValue>, Option<Vec<Value>>), UpstreamError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut pages = Pages { state: PageState::Pending(Pages::default().next_id()), ..Pages::default() };
        self.send(&self.list_request(&pages.next_id(), None)).await?;
        self.send(&self.request_line(CALL_ID, method, params)).await?;
        let mut answer: Option<Result<Box<RawValue>, UpstreamError>> = None;
        let mut grace_end = deadline;
        loop {
            if pages.finished()
                && let Some(answer) = answer.take()
            {
                return answer.map(|result| (result, pages.into_tools()));
            }
            let next = if answer.is_none() {
                match tokio::time::timeout_at(deadline, self.next_response()).await {
                    Ok(next) => next?,
                    Err(_) => return Err(timeout("answer", limit)),
                }
            } else {
                match tokio::time::timeout_at(grace_end, self.next_response()).await {
                    Ok(Ok(next)) => next,
                    // The request is answered: a list that breaks or lags is only dropped.
                    Ok(Err(_)) | Err(_) => {
                        pages.state = PageState::Abandoned;
                        continue;
                    }
                }
            };
            let (id, result) = next;
            if id == CALL_ID {
                answer = Some(result);
                grace_end = tokio::time::Instant::now() + LIST_GRACE;
                continue;
            }
            if pages.state != PageState::Pending(id) {
                continue;
            }
            let cursor = match result {
                Ok(page) => pages.add(&page),
                Err(_) => {
                    pages.state = PageState::Abandoned;
                    None
                }
            };
            if let Some(cursor) = cursor
                && let Err(e) = self.send(&self.list_request(&pages.next_id(), Some(&cursor))).await
            {
                pages.state = PageState::Abandoned;
                if answer.is_none() {
                    return Err(e);
                }
            }
        }
    }
}
