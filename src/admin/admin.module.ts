import { Module } from '@nestjs/common';
import { AdminController } from './admin.controller';
import { AdminGuard } from './admin.guard';
import { UserViewService } from './user-view.service';

/** Admin routes (ADMIN_API_KEYS): the per-user view, GET /v1/users/<id>. */
@Module({ controllers: [AdminController], providers: [AdminGuard, UserViewService] })
export class AdminModule {}
