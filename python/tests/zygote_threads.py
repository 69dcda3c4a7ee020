"""A preload that leaves a thread running: the Python zygote must refuse to serve."""
import threading

threading.Thread(target=threading.Event().wait, name="left-behind", daemon=True).start()
