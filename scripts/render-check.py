#!/usr/bin/python3
"""Renders HTML emails in headless Chromium and prints what a reader would see, as JSON.

Usage: render-check.py [--screenshots DIR] FILE...

For each file, at a desktop width (1200 px) and a phone (390 px, mobile emulation, which honours the viewport
meta tag as a phone does), in the light and the dark colour scheme, it prints the layout viewport's width, the
page's scroll width, the document's lang and dir, and every link: its href, text, box and colours. Tests decide
what is right; this only looks. Talks to Chromium over the DevTools protocol (Debian's chromium and
python3-websocket).
"""

import argparse
import base64
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

VIEWS = [
    {"name": "desktop", "width": 1200, "height": 900, "scale": 1, "mobile": False},
    {"name": "phone", "width": 390, "height": 844, "scale": 3, "mobile": True},
]

MEASURE = r"""
(() => {
  const colour = (element, property) => getComputedStyle(element).getPropertyValue(property);
  const transparent = (value) => !value || value === 'rgba(0, 0, 0, 0)' || value === 'transparent';
  // The element whose background shows behind `element`: itself, else its nearest ancestor with one.
  const painter = (element) => {
    for (let node = element; node; node = node.parentElement) {
      if (!transparent(colour(node, 'background-color'))) return node;
    }
    return null;
  };
  const background = (element) => {
    const node = element && painter(element);
    return node ? colour(node, 'background-color') : 'rgb(255, 255, 255)';
  };
  const links = [...document.querySelectorAll('a[href]')].map((a) => {
    const box = a.getBoundingClientRect();
    const own = painter(a);
    return {
      href: a.getAttribute('href'), text: a.innerText.trim(),
      left: box.left, right: box.right, top: box.top, bottom: box.bottom, width: box.width, height: box.height,
      color: colour(a, 'color'), background: background(a),
      // What is around the link's own background: a button must stand out from it.
      around: own ? background(own.parentElement) : 'rgb(255, 255, 255)',
    };
  });
  return JSON.stringify({
    innerWidth: window.innerWidth,
    innerHeight: window.innerHeight,
    clientWidth: document.documentElement.clientWidth,
    scrollWidth: document.documentElement.scrollWidth,
    lang: document.documentElement.getAttribute('lang'),
    dir: document.documentElement.getAttribute('dir'),
    bodyBackground: background(document.body),
    links,
  });
})()
"""


class DevTools:
    def __init__(self, url):
        self.socket = websocket.create_connection(url, timeout=30)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def wait_for(self, event):
        while True:
            message = json.loads(self.socket.recv())
            if message.get("method") == event:
                return message


def start_browser(profile):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        sys.exit("render-check: chromium is not installed (apt-get install chromium)")
    process = subprocess.Popen(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    port_file = pathlib.Path(profile, "DevToolsActivePort")
    for _ in range(300):
        if port_file.exists() and port_file.read_text().count("\n") >= 1:
            port = port_file.read_text().splitlines()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as answer:
                pages = [t for t in json.load(answer) if t["type"] == "page"]
            if pages:
                return process, pages[0]["webSocketDebuggerUrl"]
        if process.poll() is not None:
            sys.exit(f"render-check: chromium exited with {process.returncode}")
        time.sleep(0.1)
    process.kill()
    sys.exit("render-check: chromium did not open its DevTools port")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", help="save a PNG of each view here")
    parser.add_argument("files", nargs="+")
    arguments = parser.parse_args()
    profile = tempfile.mkdtemp(prefix="render-check-")
    process, url = start_browser(profile)
    results = []
    try:
        tools = DevTools(url)
        tools.call("Page.enable")
        for file in arguments.files:
            for view in VIEWS:
                for scheme in ["light", "dark"]:
                    tools.call("Emulation.setDeviceMetricsOverride", width=view["width"], height=view["height"],
                               deviceScaleFactor=view["scale"], mobile=view["mobile"])
                    tools.call("Emulation.setEmulatedMedia",
                               features=[{"name": "prefers-color-scheme", "value": scheme}])
                    tools.call("Page.navigate", url=pathlib.Path(file).resolve().as_uri())
                    tools.wait_for("Page.loadEventFired")
                    measured = tools.call("Runtime.evaluate", expression=MEASURE, returnByValue=True)
                    result = json.loads(measured["result"]["value"])
                    result.update(file=file, view=view["name"], scheme=scheme)
                    if arguments.screenshots:
                        shot = tools.call("Page.captureScreenshot", format="png")
                        name = f"{pathlib.Path(file).stem}-{view['name']}-{scheme}.png"
                        pathlib.Path(arguments.screenshots, name).write_bytes(
                            base64.b64decode(shot["data"]))
                    results.append(result)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)
    json.dump(results, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
