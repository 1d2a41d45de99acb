from django.contrib import admin
from django.urls import path

from tests.admin import restricted

urlpatterns = [path("admin/", admin.site.urls), path("restricted/", restricted.urls)]
