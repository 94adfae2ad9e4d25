import tornado.ioloop
import tornado.web
import tornado.gen

class MyHandler(tornado.web.RequestHandler):
    @tornado.gen.coroutine
    def get(self):
        result = yield self.async_operation()
        self.write("Result: {}".format(result))

    @tornado.gen.coroutine
    def async_operation(self):
        future = tornado.concurrent.Future()
        future.set_result("Async operation result")
        return future.result()

if __name__ == "__main__":
    app = tornado.web.Application([(r"/", MyHandler)])
    app.listen(8888)
    tornado.ioloop.IOLoop.current().start()
