/* Undo and redo of graph edits: a list of snapshots of the graph JSON (nodes, parameters,
 * edges, positions, groups). After every edit the editor records the graph; a snapshot equal
 * to the current one is not recorded, so moving the mouse around changes nothing.
 */
(function () {
  "use strict";
  const TG = (window.TalkGraph = window.TalkGraph || {});

  class History {
    constructor(limit) {
      this.limit = limit || 200;
      this.states = [];
      this.index = -1;
    }

    reset(state) {
      this.states = [state];
      this.index = 0;
    }

    current() { return this.index >= 0 ? this.states[this.index] : null; }

    // Returns whether the state was new.
    record(state) {
      if (state === this.current()) return false;
      this.states = this.states.slice(0, this.index + 1);
      this.states.push(state);
      if (this.states.length > this.limit) this.states.shift();
      this.index = this.states.length - 1;
      return true;
    }

    canUndo() { return this.index > 0; }
    canRedo() { return this.index < this.states.length - 1; }

    undo() {
      if (!this.canUndo()) return null;
      this.index -= 1;
      return this.states[this.index];
    }

    redo() {
      if (!this.canRedo()) return null;
      this.index += 1;
      return this.states[this.index];
    }
  }

  TG.History = History;
})();
