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
