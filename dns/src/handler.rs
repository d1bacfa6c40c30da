//! Answering one query on one network: the directory's names (A, AAAA, PTR) to those who may
//! see them, the rest forwarded when the network forwards, REFUSED when it does not. Queries
//! over a source's rate are dropped unanswered.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use wasmnet_engine::directory::Reverse;

use crate::Shared;

/// Local names are not cached: they change with every connect and disconnect.
const LOCAL_TTL: u32 = 0;

pub struct Handler {
    pub(crate) shared: Arc<Shared>,
    pub(crate) network: String,
    /// Whether names not served here are forwarded upstream.
    pub(crate) forward: bool,
}

/// What a query gets.
enum Outcome {
    Records(Vec<Record>),
    Code(ResponseCode),
    Forward,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let mut unanswered = Metadata::response_from_request(&request.metadata);
        unanswered.response_code = ResponseCode::ServFail;
        if !self.shared.limiter.allow(request.src().ip()) {
            return header(unanswered);
        }
        let outcome = self.decide(request);
        let edns = request.edns.as_ref().map(|e| {
            let mut ours = Edns::new();
            ours.set_max_payload(e.max_payload().max(512));
            ours
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = self.forward;
        let sent = match outcome {
            Outcome::Records(records) => {
                meta.authoritative = true;
                let none = std::iter::empty();
                let msg = builder.build(meta, records.iter(), none.clone(), none.clone(), none);
                response.send_response(msg).await
            }
            Outcome::Code(code) => {
                meta.authoritative = code == ResponseCode::NXDomain;
                meta.response_code = code;
                response.send_response(builder.build_no_records(meta)).await
            }
            Outcome::Forward => {
                let Some(answer) = self.forwarded(request).await else {
                    meta.response_code = ResponseCode::ServFail;
                    return match response.send_response(builder.build_no_records(meta)).await {
                        Ok(info) => info,
                        Err(_) => header(unanswered),
                    };
                };
                self.learn(&answer);
                meta.response_code = answer.metadata.response_code;
                meta.authentic_data = answer.metadata.authentic_data;
                let msg = builder.build(
                    meta,
                    answer.answers.iter(),
                    answer.authorities.iter(),
                    std::iter::empty(),
                    answer.additionals.iter(),
                );
                response.send_response(msg).await
            }
        };
        sent.unwrap_or_else(|e| {
            tracing::debug!("answering {}: {e}", request.src());
            header(unanswered)
        })
    }
}

impl Handler {
    fn decide(&self, request: &Request) -> Outcome {
        let Ok(info) = request.request_info() else {
            return Outcome::Code(ResponseCode::FormErr);
        };
        if request.metadata.op_code != OpCode::Query {
            return Outcome::Code(ResponseCode::NotImp);
        }
        let qname: Name = info.query.name().clone().into();
        let qtype = info.query.query_type();
        let src = request.src().ip();
        let directory = self.shared.directory();
        if qtype == RecordType::PTR {
            let Some(ip) = qname
                .parse_arpa_name()
                .ok()
                .filter(|n| n.prefix_len() == n.max_prefix_len())
            else {
                return self.elsewhere();
            };
            return match directory.reverse(&self.network, src, ip.addr()) {
                Reverse::Name(name) => match Name::from_ascii(format!("{name}.")) {
                    Ok(ptr) => Outcome::Records(vec![Record::from_rdata(
                        qname,
                        LOCAL_TTL,
                        RData::PTR(PTR(ptr)),
                    )]),
                    Err(_) => Outcome::Code(ResponseCode::ServFail),
                },
                Reverse::Unassigned => Outcome::Code(ResponseCode::NXDomain),
                Reverse::Elsewhere => self.elsewhere(),
            };
        }
        let lower = qname.to_ascii().to_ascii_lowercase();
        let Some(addrs) = directory.lookup(&self.network, src, lower.trim_end_matches('.')) else {
            return self.elsewhere();
        };
        Outcome::Records(records(&qname, qtype, addrs))
    }

    /// A name this network does not serve: forwarded, or refused where nothing is forwarded.
    fn elsewhere(&self) -> Outcome {
        match self.forward && !self.shared.upstreams.servers.is_empty() {
            true => Outcome::Forward,
            false => Outcome::Code(ResponseCode::Refused),
        }
    }

    /// A forwarded answer's addresses, for the name patterns its question matches.
    fn learn(&self, answer: &Message) {
        let Some(q) = answer.queries.first() else {
            return;
        };
        let addrs: Vec<(IpAddr, u32)> = answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some((IpAddr::V4(a.0), r.ttl)),
                RData::AAAA(a) => Some((IpAddr::V6(a.0), r.ttl)),
                _ => None,
            })
            .collect();
        self.shared.learn(&q.name().to_ascii(), &addrs);
    }

    async fn forwarded(&self, request: &Request) -> Option<Message> {
        let upstreams = &self.shared.upstreams;
        upstreams
            .forward(request.as_slice(), request.metadata.id)
            .await
    }
}

/// A served name's records of the asked type (none: the name exists, without that type).
fn records(qname: &Name, qtype: RecordType, addrs: &[IpAddr]) -> Vec<Record> {
    let any = qtype == RecordType::ANY;
    addrs
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) if any || qtype == RecordType::A => Some(RData::A(A(*v4))),
            IpAddr::V6(v6) if any || qtype == RecordType::AAAA => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        })
        .map(|rdata| Record::from_rdata(qname.clone(), LOCAL_TTL, rdata))
        .collect()
}

fn header(metadata: Metadata) -> ResponseInfo {
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}
