//! The bundled customer-feedback data set and the statistics the demo tools report.
//!
//! The rows live in `feedback.csv` next to this file, embedded at compile time, so every
//! build answers every query identically. The file's last column (`comment`) may contain
//! commas: a row is split on its first five commas only, and comments never contain
//! quotes or newlines.
//!
//! Pure: no I/O, no environment, no clock. Every number is computed from integer counts
//! and rounded once, so results are byte-stable across platforms.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// The data set's CSV text, checked in next to this file.
const BUNDLED_CSV: &str = include_str!("feedback.csv");

/// The header the CSV must start with; guards against a reordered file.
const HEADER: &str = "id,survey,date,segment,score,comment";

/// Highest score a respondent can give (NPS scale 0-10).
const MAX_SCORE: u8 = 10;

/// One survey response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// Stable row id (`fb-0001`…), so a search hit can be quoted back.
    pub(super) id: String,
    /// The survey this response belongs to; tools select by it.
    pub(super) survey: String,
    /// Day the response was given, `YYYY-MM-DD`, always within 2025.
    pub(super) date: String,
    /// Customer segment (`enterprise`, `smb`, `consumer`, `education`), for breakdowns.
    pub(super) segment: String,
    /// Likelihood-to-recommend score, 0-10.
    pub(super) score: u8,
    /// Free-text comment, searched by `search_feedback`.
    pub(super) comment: String,
    /// `comment` lower-cased once, so searches are case-insensitive without re-folding.
    comment_folded: String,
}

/// The whole data set, in file order (which is date order).
#[derive(Debug, Clone)]
pub(super) struct Feedback {
    /// Every response; never empty for the bundled file.
    entries: Vec<Entry>,
}

/// Why the CSV could not be read; only a broken checked-in file can produce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DataError {
    /// 1-based line of the CSV text that is wrong.
    pub(super) line: usize,
    /// What is wrong with it.
    pub(super) reason: &'static str,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "feedback.csv line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for DataError {}

/// One survey as `list_surveys` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct SurveyInfo {
    pub(super) survey: String,
    pub(super) responses: u32,
    pub(super) first_date: String,
    pub(super) last_date: String,
}

/// `list_surveys` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct SurveyList {
    pub(super) surveys: Vec<SurveyInfo>,
}

/// `survey_summary` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct SurveySummary {
    pub(super) survey: String,
    pub(super) responses: u32,
    /// % promoters (9-10) minus % detractors (0-6), one decimal.
    pub(super) nps: f64,
    /// Mean score, two decimals.
    pub(super) average_score: f64,
    pub(super) promoters: u32,
    pub(super) passives: u32,
    pub(super) detractors: u32,
}

/// One segment's line in `segment_breakdown`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct SegmentStats {
    pub(super) segment: String,
    pub(super) responses: u32,
    pub(super) nps: f64,
    pub(super) average_score: f64,
}

/// `segment_breakdown` output; segments in name order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct SegmentBreakdown {
    pub(super) survey: String,
    pub(super) segments: Vec<SegmentStats>,
}

/// One `search_feedback` hit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct SearchMatch {
    pub(super) id: String,
    pub(super) survey: String,
    pub(super) date: String,
    pub(super) segment: String,
    pub(super) score: u8,
    pub(super) comment: String,
}

/// `search_feedback` output: the first `limit` hits in id order, and how many there were.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct SearchResults {
    pub(super) query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) survey: Option<String>,
    pub(super) total_matches: u32,
    pub(super) matches: Vec<SearchMatch>,
}

/// Running counts from which NPS and the average are derived.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    responses: u32,
    promoters: u32,
    passives: u32,
    detractors: u32,
    score_sum: u32,
}

impl Tally {
    fn add(&mut self, score: u8) {
        self.responses += 1;
        self.score_sum += u32::from(score);
        match score {
            9.. => self.promoters += 1,
            7..=8 => self.passives += 1,
            _ => self.detractors += 1,
        }
    }

    /// NPS with one decimal: round(1000 · (P − D) / N) / 10.
    fn nps(&self) -> f64 {
        let net = i64::from(self.promoters) - i64::from(self.detractors);
        rounded_ratio(net * 1000, self.responses, 10.0)
    }

    /// Average score with two decimals: round(100 · sum / N) / 100.
    fn average(&self) -> f64 {
        rounded_ratio(i64::from(self.score_sum) * 100, self.responses, 100.0)
    }
}

/// `round(numer / denom) / scale`, rounding half away from zero in integers so the result
/// does not depend on floating-point rounding; 0 for an empty tally.
fn rounded_ratio(numer: i64, denom: u32, scale: f64) -> f64 {
    let denom = i64::from(denom);
    if denom == 0 {
        return 0.0;
    }
    let rounded =
        if numer >= 0 { (2 * numer + denom) / (2 * denom) } else { -((-2 * numer + denom) / (2 * denom)) };
    // |rounded| ≤ 100 000 here, exactly representable.
    rounded as f64 / scale
}

impl Feedback {
    /// The data set shipped with the binary.
    pub(super) fn bundled() -> Result<Self, DataError> {
        Self::parse(BUNDLED_CSV)
    }

    /// Parses the CSV format described in the module docs; rejects the whole text on the
    /// first bad row rather than serving a silently shortened data set.
    pub(super) fn parse(csv: &str) -> Result<Self, DataError> {
        let mut lines = csv.lines().enumerate();
        match lines.next() {
            Some((_, header)) if header.trim_end() == HEADER => {}
            _ => {
                return Err(DataError { line: 1, reason: "missing or unexpected header" });
            }
        }
        let mut entries = Vec::new();
        for (index, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let entry = parse_row(line.trim_end()).map_err(|reason| DataError { line: index + 1, reason })?;
            entries.push(entry);
        }
        if entries.is_empty() {
            return Err(DataError { line: 1, reason: "no rows" });
        }
        Ok(Self { entries })
    }

    /// Every response, in file order (tests cross-check the statistics against it).
    #[cfg(test)]
    pub(super) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Survey ids in name order.
    pub(super) fn survey_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.entries.iter().map(|e| e.survey.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Whether any response belongs to `survey`.
    pub(super) fn has_survey(&self, survey: &str) -> bool {
        self.entries.iter().any(|e| e.survey == survey)
    }

    /// Each survey with its response count and date range, in name order.
    pub(super) fn surveys(&self) -> SurveyList {
        let mut by_survey: BTreeMap<&str, SurveyInfo> = BTreeMap::new();
        for entry in &self.entries {
            let info = by_survey.entry(entry.survey.as_str()).or_insert_with(|| SurveyInfo {
                survey: entry.survey.clone(),
                responses: 0,
                first_date: entry.date.clone(),
                last_date: entry.date.clone(),
            });
            info.responses += 1;
            // ISO dates order correctly as strings.
            if entry.date < info.first_date {
                info.first_date.clone_from(&entry.date);
            }
            if entry.date > info.last_date {
                info.last_date.clone_from(&entry.date);
            }
        }
        SurveyList { surveys: by_survey.into_values().collect() }
    }

    /// Headline numbers for one survey; `None` if it has no responses.
    pub(super) fn summary(&self, survey: &str) -> Option<SurveySummary> {
        let mut tally = Tally::default();
        for entry in self.entries.iter().filter(|e| e.survey == survey) {
            tally.add(entry.score);
        }
        (tally.responses > 0).then(|| SurveySummary {
            survey: survey.to_owned(),
            responses: tally.responses,
            nps: tally.nps(),
            average_score: tally.average(),
            promoters: tally.promoters,
            passives: tally.passives,
            detractors: tally.detractors,
        })
    }

    /// Per-segment numbers for one survey; `None` if it has no responses.
    pub(super) fn segments(&self, survey: &str) -> Option<SegmentBreakdown> {
        let mut by_segment: BTreeMap<&str, Tally> = BTreeMap::new();
        for entry in self.entries.iter().filter(|e| e.survey == survey) {
            by_segment.entry(entry.segment.as_str()).or_default().add(entry.score);
        }
        if by_segment.is_empty() {
            return None;
        }
        let segments = by_segment
            .into_iter()
            .map(|(segment, tally)| SegmentStats {
                segment: segment.to_owned(),
                responses: tally.responses,
                nps: tally.nps(),
                average_score: tally.average(),
            })
            .collect();
        Some(SegmentBreakdown { survey: survey.to_owned(), segments })
    }

    /// Case-insensitive substring search over comments, optionally within one survey;
    /// returns at most `limit` hits in file order plus the total number of hits.
    pub(super) fn search(&self, query: &str, survey: Option<&str>, limit: usize) -> SearchResults {
        let needle = query.to_lowercase();
        let mut total_matches = 0;
        let mut matches = Vec::new();
        let hits = self
            .entries
            .iter()
            .filter(|e| survey.is_none_or(|s| e.survey == s))
            .filter(|e| e.comment_folded.contains(&needle));
        for entry in hits {
            total_matches += 1;
            if matches.len() < limit {
                matches.push(SearchMatch {
                    id: entry.id.clone(),
                    survey: entry.survey.clone(),
                    date: entry.date.clone(),
                    segment: entry.segment.clone(),
                    score: entry.score,
                    comment: entry.comment.clone(),
                });
            }
        }
        SearchResults { query: query.to_owned(), survey: survey.map(str::to_owned), total_matches, matches }
    }
}

/// One data row: `id,survey,date,segment,score,comment`, the comment taking the rest.
fn parse_row(line: &str) -> Result<Entry, &'static str> {
    let mut fields = line.splitn(6, ',');
    let mut next = |what: &'static str| match fields.next() {
        Some(field) if !field.trim().is_empty() => Ok(field.trim()),
        _ => Err(what),
    };
    let id = next("missing id")?;
    let survey = next("missing survey")?;
    let date = next("missing date")?;
    let segment = next("missing segment")?;
    let score = next("missing score")?;
    let comment = next("missing comment")?;
    if !is_2025_date(date) {
        return Err("date is not YYYY-MM-DD within 2025");
    }
    let score: u8 = score.parse().map_err(|_| "score is not an integer")?;
    if score > MAX_SCORE {
        return Err("score is above 10");
    }
    Ok(Entry {
        id: id.to_owned(),
        survey: survey.to_owned(),
        date: date.to_owned(),
        segment: segment.to_owned(),
        score,
        comment: comment.to_owned(),
        comment_folded: comment.to_lowercase(),
    })
}

/// `2025-MM-DD` with a month 01-12 and a day 01-31 (a shape check, not a calendar).
fn is_2025_date(date: &str) -> bool {
    let bytes = date.as_bytes();
    let digits_at = |range: std::ops::Range<usize>| {
        bytes.get(range).is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let number = |range: std::ops::Range<usize>| date.get(range).and_then(|s| s.parse::<u8>().ok());
    bytes.len() == 10
        && date.starts_with("2025-")
        && bytes.get(7) == Some(&b'-')
        && digits_at(5..7)
        && digits_at(8..10)
        && number(5..7).is_some_and(|m| (1..=12).contains(&m))
        && number(8..10).is_some_and(|d| (1..=31).contains(&d))
}
