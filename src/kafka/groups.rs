//! Consumer group descriptions: which live member holds which partition, as the group
//! coordinator says, for both group protocols (classic and KIP-848's consumer protocol).
//!
//! rdkafka 0.39 does not wrap librdkafka's `DescribeConsumerGroups` admin call, which since
//! librdkafka 2.10 describes groups of either protocol (it asks `ConsumerGroupDescribe` and falls
//! back to the classic `DescribeGroups`); this module calls it through `rdkafka::bindings`. All
//! the unsafe code is here, and every pointer it reads is owned by the result event, which it
//! destroys last.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::time::Duration;

use eventline_core::config::KafkaSettings;
use rdkafka::admin::AdminClient;
use rdkafka::bindings as rd;

use crate::client::TracingContext;
use crate::consumer::TopicPartition;
use crate::inspector::Inspector;
use crate::Error;

/// One live member of a group and the partitions the coordinator has given it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub assignment: Vec<TopicPartition>,
}

/// A consumer group as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`, `Assigning`,
    /// `Reconciling` or `Unknown`.
    pub state: String,
    pub members: Vec<GroupMember>,
}

impl GroupDescription {
    /// Every partition some live member holds.
    pub fn owned(&self) -> BTreeSet<TopicPartition> {
        self.members.iter().flat_map(|m| m.assignment.iter().cloned()).collect()
    }
}

/// Describes `groups` (a group that does not exist is described as `Dead` with no members).
///
/// librdkafka asks each group's coordinator about each group in its own requests (two for a
/// group of the classic protocol), which costs the broker about 0.3 ms of CPU per group: too much
/// for a status read of hundreds of projections every few seconds. So the groups are listed
/// first (one request per broker, with their states), and only those that may have members
/// (listed, and not `Empty`) are described.
pub async fn describe(
    settings: &KafkaSettings,
    groups: &[String],
    within: Duration,
) -> Result<Vec<GroupDescription>, Error> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    Inspector::new(settings)?.describe_groups(groups, within).await
}

pub(crate) fn describe_with(
    admin: &AdminClient<TracingContext>,
    settings: &KafkaSettings,
    groups: &[String],
    within: Duration,
) -> Result<Vec<GroupDescription>, Error> {
    let unreachable = |reason| Error::Unreachable { brokers: settings.bootstrap_servers(), timeout: within, reason };
    let states = list_blocking(admin, within).map_err(unreachable)?;
    let occupied: Vec<String> =
        groups.iter().filter(|g| states.get(*g).is_some_and(|state| state != "Empty")).cloned().collect();
    let mut described: HashMap<String, GroupDescription> = describe_blocking(admin, &occupied, within)
        .map_err(unreachable)?
        .into_iter()
        .map(|description| (description.group.clone(), description))
        .collect();
    Ok(groups
        .iter()
        .map(|group| {
            described.remove(group).unwrap_or_else(|| GroupDescription {
                group: group.clone(),
                state: states.get(group).cloned().unwrap_or_else(|| "Dead".into()),
                members: Vec::new(),
            })
        })
        .collect())
}

/// Every group the cluster knows, with its state.
fn list_blocking(admin: &AdminClient<TracingContext>, within: Duration) -> Result<HashMap<String, String>, String> {
    let op = rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS;
    // SAFETY: the request reads nothing but the handle, options and queue it is given.
    admin_request(
        admin,
        op,
        within,
        |rk, options, queue| unsafe { rd::rd_kafka_ListConsumerGroups(rk, options, queue) },
        read_listing,
    )
}

/// Sends one admin request (`send`, given the client, its options and the queue to answer on)
/// and reads its result event with `read`, waiting at most about `within`.
fn admin_request<T>(
    admin: &AdminClient<TracingContext>,
    op: rd::rd_kafka_admin_op_t,
    within: Duration,
    send: impl FnOnce(*mut rd::rd_kafka_t, *mut rd::rd_kafka_AdminOptions_t, *mut rd::rd_kafka_queue_t),
    read: unsafe fn(*mut rd::rd_kafka_event_t) -> Result<T, String>,
) -> Result<T, String> {
    let timeout_ms = i32::try_from(within.as_millis()).unwrap_or(i32::MAX);
    let rk = admin.inner().native_ptr();
    // SAFETY: `rk` lives as long as `admin`; the queue, options and event are created and
    // destroyed here, and `read` is given the event (or null) that the queue returned.
    unsafe {
        let queue = rd::rd_kafka_queue_new(rk);
        let options = rd::rd_kafka_AdminOptions_new(rk, op);
        let mut errstr = [0 as c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr.as_mut_ptr(), errstr.len());
        send(rk, options, queue);
        // Generous: the request timeout bounds the call itself.
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1_000));
        let result = read(event);
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_queue_destroy(queue);
        result
    }
}

/// Reads a `ListConsumerGroups` result event into group → state. A broker that could not
/// answer fails the listing: a group it coordinates would otherwise look as if it did not exist.
///
/// # Safety
/// `event` is null or a live event returned by `rd_kafka_queue_poll`.
unsafe fn read_listing(event: *mut rd::rd_kafka_event_t) -> Result<HashMap<String, String>, String> {
    if event.is_null() {
        return Err("the brokers did not list their groups in time".into());
    }
    if rd::rd_kafka_event_type(event) != rd::RD_KAFKA_EVENT_LISTCONSUMERGROUPS_RESULT {
        return Err("unexpected answer to a group listing".into());
    }
    if rd::rd_kafka_event_error(event) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(text(rd::rd_kafka_event_error_string(event)));
    }
    let result = rd::rd_kafka_event_ListConsumerGroups_result(event);
    let mut count = 0usize;
    let errors = rd::rd_kafka_ListConsumerGroups_result_errors(result, &mut count);
    if count > 0 {
        return Err(text(rd::rd_kafka_error_string(*errors)));
    }
    let listings = rd::rd_kafka_ListConsumerGroups_result_valid(result, &mut count);
    let mut states = HashMap::with_capacity(count);
    for i in 0..count {
        let listing = *listings.add(i);
        let state = rd::rd_kafka_consumer_group_state_name(rd::rd_kafka_ConsumerGroupListing_state(listing));
        states.insert(text(rd::rd_kafka_ConsumerGroupListing_group_id(listing)), text(state));
    }
    Ok(states)
}

fn describe_blocking(
    admin: &AdminClient<TracingContext>,
    groups: &[String],
    within: Duration,
) -> Result<Vec<GroupDescription>, String> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<CString> = groups
        .iter()
        .map(|g| CString::new(g.as_str()).map_err(|_| format!("group `{g}` holds a NUL byte")))
        .collect::<Result<_, _>>()?;
    let mut pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let op = rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS;
    // SAFETY: `names` outlives the call that reads `pointers`.
    let send = |rk, options: *mut rd::rd_kafka_AdminOptions_t, queue| unsafe {
        rd::rd_kafka_DescribeConsumerGroups(rk, pointers.as_mut_ptr(), pointers.len(), options, queue)
    };
    admin_request(admin, op, within, send, read_result)
}

/// Reads a `DescribeConsumerGroups` result event into owned values.
///
/// # Safety
/// `event` is null or a live event returned by `rd_kafka_queue_poll`.
unsafe fn read_result(event: *mut rd::rd_kafka_event_t) -> Result<Vec<GroupDescription>, String> {
    if event.is_null() {
        return Err("the group coordinator did not answer in time".into());
    }
    if rd::rd_kafka_event_type(event) != rd::RD_KAFKA_EVENT_DESCRIBECONSUMERGROUPS_RESULT {
        return Err("unexpected answer to a group description".into());
    }
    if rd::rd_kafka_event_error(event) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(text(rd::rd_kafka_event_error_string(event)));
    }
    let result = rd::rd_kafka_event_DescribeConsumerGroups_result(event);
    let mut count = 0usize;
    let descriptions = rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut count);
    let mut groups = Vec::with_capacity(count);
    for i in 0..count {
        let description = *descriptions.add(i);
        let error = rd::rd_kafka_ConsumerGroupDescription_error(description);
        let group = text(rd::rd_kafka_ConsumerGroupDescription_group_id(description));
        if !error.is_null() {
            let code = rd::rd_kafka_error_code(error);
            // A group nobody has joined yet: no members, nothing owned.
            if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND {
                groups.push(GroupDescription { group, state: "Dead".into(), members: Vec::new() });
                continue;
            }
            return Err(format!("group `{group}`: {}", text(rd::rd_kafka_error_string(error))));
        }
        let state =
            text(rd::rd_kafka_consumer_group_state_name(rd::rd_kafka_ConsumerGroupDescription_state(description)));
        let mut members = Vec::new();
        for m in 0..rd::rd_kafka_ConsumerGroupDescription_member_count(description) {
            let member = rd::rd_kafka_ConsumerGroupDescription_member(description, m);
            let assignment = rd::rd_kafka_MemberDescription_assignment(member);
            let partitions = if assignment.is_null() {
                std::ptr::null()
            } else {
                rd::rd_kafka_MemberAssignment_partitions(assignment)
            };
            members.push(GroupMember {
                member_id: text(rd::rd_kafka_MemberDescription_consumer_id(member)),
                client_id: text(rd::rd_kafka_MemberDescription_client_id(member)),
                host: text(rd::rd_kafka_MemberDescription_host(member)),
                assignment: read_partitions(partitions),
            });
        }
        groups.push(GroupDescription { group, state, members });
    }
    Ok(groups)
}

/// # Safety
/// `list` is null or a live partition list.
unsafe fn read_partitions(list: *const rd::rd_kafka_topic_partition_list_t) -> Vec<TopicPartition> {
    if list.is_null() {
        return Vec::new();
    }
    let list = &*list;
    (0..usize::try_from(list.cnt).unwrap_or(0))
        .map(|i| {
            let element = &*list.elems.add(i);
            TopicPartition { topic: text(element.topic), partition: element.partition }
        })
        .collect()
}

/// # Safety
/// `pointer` is null or a NUL-terminated string.
unsafe fn text(pointer: *const c_char) -> String {
    if pointer.is_null() {
        String::new()
    } else {
        CStr::from_ptr(pointer).to_string_lossy().into_owned()
    }
}
