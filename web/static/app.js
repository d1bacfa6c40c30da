// The only script: live updates where they pay. Every page shows its data without it.
const events = document.getElementById("events");
const topology = document.getElementById("topology");
const source = (events || topology)?.dataset.source || topology?.dataset.live;
if (source) {
  const stream = new EventSource(source);
  stream.onmessage = (e) => handle(JSON.parse(e.data));
  for (const name of ["network.create", "network.delete", "sandbox.create", "sandbox.delete", "endpoint.connect", "endpoint.disconnect"]) {
    stream.addEventListener(name, (e) => handle(JSON.parse(e.data)));
  }
}

// The topology's counters move without events: redraw it every 5 s as well.
if (topology) {
  setInterval(() => { topology.src = `/topology.svg?t=${Date.now()}`; }, 5000);
}

function handle(event) {
  if (events) {
    const li = document.createElement("li");
    const name = event.object?.name || event.object?.interface || "";
    li.textContent = `${event.time} ${event.action} ${event.id.slice(0, 12)} ${name}`;
    events.prepend(li);
    while (events.children.length > 50) events.lastChild.remove();
  }
  if (topology) {
    topology.src = `/topology.svg?at=${event.seq}`;
  }
}

// The Flows page: new flows on top, as the stream brings them.
const flows = document.getElementById("flows");
if (flows) {
  const stream = new EventSource(flows.dataset.source);
  stream.addEventListener("flow", (e) => {
    const f = JSON.parse(e.data);
    const peer = (p) => {
      const at = p.port === undefined ? p.address : (p.address.includes(":") ? `[${p.address}]:${p.port}` : `${p.address}:${p.port}`);
      return p.sandbox ? `${p.sandbox} (${at})` : at;
    };
    const tr = document.createElement("tr");
    tr.dataset.seq = f.seq;
    for (const text of [f.time, f.verdict, f.decided_by, f.protocol, peer(f.source), peer(f.destination), f.network || ""]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    flows.prepend(tr);
    while (flows.children.length > 200) flows.lastChild.remove();
  });
}
