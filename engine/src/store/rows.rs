//! Mapping between the model and table rows.

use std::collections::HashMap;
use std::net::IpAddr;

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::Tx;
use crate::error::{Error, Result};
use crate::model::{Driver, Endpoint, IpConfig, Labels, Network, PortMapping, Protocol, Sandbox};

fn json<T: serde::de::DeserializeOwned>(row: &SqliteRow, col: &str) -> Result<T> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Internal(format!("column {col} holds bad JSON: {e}")))
}

fn parsed<T: std::str::FromStr>(row: &SqliteRow, col: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let text: String = row.try_get(col)?;
    text.parse()
        .map_err(|e| Error::Internal(format!("column {col} holds {text:?}: {e}")))
}

fn parsed_opt<T: std::str::FromStr>(row: &SqliteRow, col: &str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match row.try_get::<Option<String>, _>(col)? {
        None => Ok(None),
        Some(_) => parsed(row, col).map(Some),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("labels and aliases serialise")
}

fn ip_config(row: &SqliteRow, suffix: &str) -> Result<Option<IpConfig>> {
    let Some(subnet) = parsed_opt(row, &format!("subnet{suffix}"))? else {
        return Ok(None);
    };
    Ok(Some(IpConfig {
        subnet,
        gateway: parsed(row, &format!("gateway{suffix}"))?,
        ip_range: parsed_opt(row, &format!("ip_range{suffix}"))?,
    }))
}

pub async fn load_networks(pool: &SqlitePool) -> Result<Vec<Network>> {
    let rows = sqlx::query("SELECT * FROM networks")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Network {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                driver: parsed::<Driver>(r, "driver")?,
                ipv4: ip_config(r, "4")?
                    .ok_or_else(|| Error::Internal("network without IPv4".into()))?,
                ipv6: ip_config(r, "6")?,
                internal: r.try_get("internal")?,
                labels: json(r, "labels")?,
                options: json(r, "options")?,
                created: r.try_get("created")?,
            })
        })
        .collect()
}

pub async fn insert_network(tx: &mut Tx<'_>, n: &Network) -> Result<(), sqlx::Error> {
    let v6 = n.ipv6.as_ref();
    sqlx::query(
        "INSERT INTO networks (id, name, driver, subnet4, gateway4, ip_range4, subnet6, gateway6, ip_range6, internal, labels, options, created)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&n.id)
    .bind(&n.name)
    .bind(n.driver.as_str())
    .bind(n.ipv4.subnet.to_string())
    .bind(n.ipv4.gateway.to_string())
    .bind(n.ipv4.ip_range.map(|r| r.to_string()))
    .bind(v6.map(|c| c.subnet.to_string()))
    .bind(v6.map(|c| c.gateway.to_string()))
    .bind(v6.and_then(|c| c.ip_range).map(|r| r.to_string()))
    .bind(n.internal)
    .bind(to_json(&n.labels))
    .bind(to_json(&n.options))
    .bind(&n.created)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn load_sandboxes(pool: &SqlitePool) -> Result<Vec<Sandbox>> {
    let rows = sqlx::query("SELECT * FROM sandboxes")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Sandbox {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                labels: json(r, "labels")?,
                netns: r.try_get("netns")?,
                netns_owned: r.try_get("netns_owned")?,
                handoff: r.try_get("handoff")?,
                netns_name: r.try_get("netns_name")?,
                resolv_conf: r.try_get("resolv_conf")?,
                created: r.try_get("created")?,
            })
        })
        .collect()
}

pub async fn insert_sandbox(tx: &mut Tx<'_>, s: &Sandbox) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO sandboxes (id, name, labels, netns, netns_owned, handoff, netns_name, resolv_conf, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(&s.id)
        .bind(&s.name)
        .bind(to_json(&s.labels))
        .bind(&s.netns)
        .bind(s.netns_owned)
        .bind(s.handoff)
        .bind(&s.netns_name)
        .bind(&s.resolv_conf)
        .bind(&s.created)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn load_endpoints(pool: &SqlitePool) -> Result<Vec<Endpoint>> {
    let mut ports: HashMap<String, Vec<PortMapping>> = HashMap::new();
    for r in sqlx::query("SELECT * FROM published_ports ORDER BY endpoint_id, position")
        .fetch_all(pool)
        .await?
    {
        let host_ip: String = r.try_get("host_ip")?;
        let mapping = PortMapping {
            host_ip: if host_ip.is_empty() {
                None
            } else {
                Some(parsed::<IpAddr>(&r, "host_ip")?)
            },
            host_port: r.try_get::<u16, _>("host_port")?,
            container_port: r.try_get::<u16, _>("container_port")?,
            protocol: parsed::<Protocol>(&r, "protocol")?,
        };
        ports
            .entry(r.try_get("endpoint_id")?)
            .or_default()
            .push(mapping);
    }
    let rows = sqlx::query(
        "SELECT e.*, n.name AS network_name, s.name AS sandbox_name FROM endpoints e
         JOIN networks n ON n.id = e.network_id JOIN sandboxes s ON s.id = e.sandbox_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("id")?;
            Ok(Endpoint {
                ports: ports.remove(&id).unwrap_or_default(),
                id,
                network_id: r.try_get("network_id")?,
                network_name: r.try_get("network_name")?,
                sandbox_id: r.try_get("sandbox_id")?,
                sandbox_name: r.try_get("sandbox_name")?,
                interface: r.try_get("interface")?,
                mac: r.try_get("mac")?,
                ipv4: parsed_opt(r, "ipv4")?,
                ipv6: parsed_opt(r, "ipv6")?,
                aliases: json(r, "aliases")?,
                labels: json::<Labels>(r, "labels")?,
                created: r.try_get("created")?,
            })
        })
        .collect()
}

pub async fn insert_endpoint(tx: &mut Tx<'_>, e: &Endpoint) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO endpoints (id, network_id, sandbox_id, interface, mac, ipv4, ipv6, aliases, labels, created)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&e.id)
    .bind(&e.network_id)
    .bind(&e.sandbox_id)
    .bind(&e.interface)
    .bind(&e.mac)
    .bind(e.ipv4.map(|a| a.to_string()))
    .bind(e.ipv6.map(|a| a.to_string()))
    .bind(to_json(&e.aliases))
    .bind(to_json(&e.labels))
    .bind(&e.created)
    .execute(&mut **tx)
    .await?;
    for (position, p) in e.ports.iter().enumerate() {
        sqlx::query(
            "INSERT INTO published_ports (endpoint_id, position, host_ip, host_port, container_port, protocol) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.id)
        .bind(position as i64)
        .bind(p.host_ip.map(|a| a.to_string()).unwrap_or_default())
        .bind(p.host_port)
        .bind(p.container_port)
        .bind(p.protocol.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
